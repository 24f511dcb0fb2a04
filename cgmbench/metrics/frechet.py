"""Fréchet distance (FID, FVD, sFID, CLIP-FD …) and the streaming statistics it is computed from.

Heusel et al. (2017) model the features of each image set as a Gaussian and compare the two
Gaussians with the Fréchet (2-Wasserstein) distance

    FD = ||mu1 - mu2||^2 + tr(Sigma1) + tr(Sigma2) - 2 tr((Sigma1^1/2 Sigma2 Sigma1^1/2)^1/2).

Conventions (identical to pytorch-fid, clean-fid, torch-fidelity, torchmetrics and the ADM
evaluator, so numbers are interchangeable given the same features):

* statistics are in ``float64``: ``mu`` is the sample mean, ``Sigma`` the *unbiased* sample
  covariance (divisor ``N - 1``, as ``np.cov(feats, rowvar=False)``);
* the trace term ``tr sqrt(Sigma1 Sigma2)`` is taken from the eigenvalues of a *symmetric*
  positive semi-definite matrix similar to ``Sigma1 Sigma2``: ``L^T Sigma2 L`` with the
  Cholesky factor ``Sigma1 = L L^T`` (or the symmetric square root ``Sigma1^1/2`` when
  ``Sigma1`` is singular). No ``scipy.linalg.sqrtm``: that general Schur method is several
  times slower, returns spurious imaginary parts, and its ``disp`` argument (used by every
  reference implementation) is removed in SciPy 1.18. The values agree to ~1e-12 relative.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import numpy as np
import torch

from cgmbench.metrics import _checks


class SingularCovarianceWarning(UserWarning):
    """A covariance is (numerically) singular: fewer samples than feature dims, or constant features."""


# ---------------------------------------------------------------------------------------------
# Statistics of a feature matrix
# ---------------------------------------------------------------------------------------------


def feature_statistics(feats: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of a feature matrix ``feats`` of shape ``(N, d)``.

    Equals ``np.mean(feats, axis=0), np.cov(feats, rowvar=False)`` in ``float64`` (what
    pytorch-fid, clean-fid and torch-fidelity store). Warns with
    :class:`SingularCovarianceWarning` when ``N <= d`` (the covariance then has rank ``N - 1``).
    """
    x = _checks.features(feats, "feats", min_rows=2)
    _warn_if_few_samples(x.shape[0], x.shape[1])
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _warn_if_few_samples(n: int, d: int) -> None:
    if n <= d:
        warnings.warn(
            f"only N={n} samples for d={d} feature dims: the covariance has rank <= {n - 1} < d, so the Fréchet "
            f"distance is finite but strongly biased upwards; use more than {d} samples (50k is the usual protocol)",
            SingularCovarianceWarning,
            stacklevel=3,
        )


# ---------------------------------------------------------------------------------------------
# The distance
# ---------------------------------------------------------------------------------------------


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    Args:
        mu1, mu2: mean vectors, shape ``(d,)``.
        sigma1, sigma2: covariance matrices, shape ``(d, d)``, symmetric positive semi-definite.
            Singular covariances (fewer samples than dims) are handled: the value stays finite
            and a :class:`SingularCovarianceWarning` is emitted.

    Returns:
        The distance as a Python ``float`` computed in ``float64``. It can be very slightly
        negative (~-1e-10) for identical statistics because of rounding, like every reference.

    Raises:
        ValueError: on NaN/Inf, mismatched shapes or a non-symmetric covariance.
    """
    mu1 = _checks.as_float64(mu1, "mu1", ndim=1)
    mu2 = _checks.as_float64(mu2, "mu2", ndim=1)
    sigma1 = _covariance(sigma1, "sigma1", len(mu1))
    sigma2 = _covariance(sigma2, "sigma2", len(mu1))
    if mu1.shape != mu2.shape:
        raise ValueError(f"mu1 has {len(mu1)} dims but mu2 has {len(mu2)}; both statistics must use the same features")

    diff = mu1 - mu2
    tr_covmean = trace_sqrt_product(sigma1, sigma2)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def _covariance(sigma: Any, name: str, d: int) -> np.ndarray:
    s = _checks.as_float64(sigma, name, ndim=2)
    if s.shape != (d, d):
        raise ValueError(f"{name} must have shape ({d}, {d}) to match mu1, got {tuple(s.shape)}")
    scale = float(np.abs(s).max()) if s.size else 0.0
    asym = float(np.abs(s - s.T).max()) if s.size else 0.0
    if asym > 1e-6 * max(scale, 1e-300):
        raise ValueError(
            f"{name} is not symmetric (max |S - S^T| = {asym:.3g}, max |S| = {scale:.3g}); pass a covariance "
            f"matrix, e.g. np.cov(feats, rowvar=False)"
        )
    return 0.5 * (s + s.T)


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr sqrt(sigma1 @ sigma2)`` for symmetric PSD ``float64`` matrices, via one symmetric eigenproblem.

    ``sigma1 @ sigma2`` is similar to the symmetric PSD matrix ``M = R^T sigma2 R`` for any
    ``R`` with ``R R^T = sigma1`` (``R^-1 (sigma1 sigma2) R = R^T sigma2 R``), so its eigenvalues
    are real and non-negative and ``tr sqrt(sigma1 sigma2) = sum_i sqrt(eig_i(M))``. ``R`` is the
    Cholesky factor of ``sigma1`` (or of ``sigma2``, the formula being symmetric) when one is
    positive definite, else the symmetric square root from ``eigh`` with negative eigenvalues
    clipped to 0. Rounding makes a few eigenvalues of ``M`` slightly negative; they are clipped
    to 0, which is exact in the limit.
    """
    d = sigma1.shape[0]
    M = None
    for a, b in ((sigma1, sigma2), (sigma2, sigma1)):
        try:
            L = np.linalg.cholesky(a)
        except np.linalg.LinAlgError:
            continue
        M = L.T @ (b @ L)
        break
    if M is None:  # both singular: symmetric square root of sigma1
        w, V = np.linalg.eigh(sigma1)
        root = (V * np.sqrt(np.clip(w, 0.0, None))) @ V.T
        M = root @ sigma2 @ root
    eig = np.linalg.eigvalsh(0.5 * (M + M.T))

    top = max(float(eig[-1]), 0.0)
    if eig[0] < -1e-6 * top:
        warnings.warn(
            f"sigma1 @ sigma2 has a clearly negative eigenvalue ({eig[0]:.3g}, largest {top:.3g}): a covariance is "
            f"not positive semi-definite (was it computed in float32 or from too few samples?); clipping to 0",
            RuntimeWarning,
            stacklevel=3,
        )
    null = int(np.sum(eig <= d * np.finfo(np.float64).eps * top))
    if null:
        warnings.warn(
            f"singular covariance: sigma1 @ sigma2 has numerical rank {d - null} < d={d} (fewer samples than feature "
            f"dims, or constant features); the Fréchet distance is finite but biased; use more than d samples",
            SingularCovarianceWarning,
            stacklevel=3,
        )
    return float(np.sqrt(np.clip(eig, 0.0, None)).sum())


# ---------------------------------------------------------------------------------------------
# Streaming statistics: O(d^2) memory, mergeable across batches, shards and processes
# ---------------------------------------------------------------------------------------------


class StreamingMoments:
    """Running mean and covariance of feature rows in ``float64`` with memory independent of N.

    State: the count ``n``, a fixed ``shift`` vector (the mean of the first batch), and the sums
    ``sum_i (x_i - shift)`` and ``sum_i (x_i - shift)(x_i - shift)^T``. The shift removes the
    catastrophic cancellation of the plain ``E[xx^T] - mu mu^T`` formula (torchmetrics' FID)
    without changing the result: :meth:`compute` returns exactly the statistics of
    ``np.mean``/``np.cov`` (divisor ``N - 1``) up to float64 rounding. Two states with different
    shifts merge exactly (:meth:`merge`), so shards or ranks can be combined in any order.

    Tensors stay on the device of the first update (or ``device``): on a GPU the ``d x d``
    accumulation runs there.
    """

    _KEYS = ("n", "shift", "sum", "sum_outer")

    def __init__(self, dim: int | None = None, device: str | torch.device | None = None):
        self.dim = dim
        self.device = torch.device(device) if device is not None else None
        self.n = 0
        self.shift: torch.Tensor | None = None
        self.sum: torch.Tensor | None = None
        self.sum_outer: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.n

    # -- accumulation ---------------------------------------------------------------------------

    def update(self, feats: Any) -> "StreamingMoments":
        """Add feature rows ``feats`` of shape ``(batch, d)`` (NumPy or torch, any float dtype)."""
        x = self._as_tensor(feats)
        if x.shape[0] == 0:
            return self
        if self.shift is None:
            self._allocate(x.shape[1], x.device, shift=x.mean(dim=0))
        xc = x - self.shift
        self.sum += xc.sum(dim=0)
        self.sum_outer.addmm_(xc.T, xc)  # in place: no d x d temporary
        self.n += x.shape[0]
        return self

    def merge(self, other: "StreamingMoments") -> "StreamingMoments":
        """Add the samples summarised by ``other`` to this state (in place); returns ``self``."""
        if not isinstance(other, StreamingMoments):
            raise ValueError(f"can only merge another StreamingMoments, got {type(other).__name__}")
        if other.n == 0:
            return self
        if self.dim is not None and other.dim is not None and self.dim != other.dim:
            raise ValueError(f"cannot merge moments of {other.dim}-d features into {self.dim}-d features")
        if self.n == 0:
            self._allocate(other.dim, self.device or other.sum.device, shift=other.shift)
        s_o, ss_o = other.sum.to(self.sum.device), other.sum_outer.to(self.sum.device)
        delta = other.shift.to(self.sum.device) - self.shift  # (x - shift) = (x - other.shift) + delta
        self.sum_outer += ss_o + torch.outer(delta, s_o) + torch.outer(s_o, delta) + other.n * torch.outer(delta, delta)
        self.sum += s_o + other.n * delta
        self.n += other.n
        return self

    def compute(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mu, sigma)`` as ``float64`` NumPy arrays: the sample mean and unbiased ``(N-1)`` covariance."""
        if self.n < 2:
            raise ValueError(
                f"need at least 2 feature rows to estimate a covariance, got {self.n}; call update() first"
            )
        mean_c = self.sum / self.n
        cov = torch.addr(self.sum_outer, mean_c, mean_c, alpha=-self.n).div_(self.n - 1)
        cov.add_(cov.T.clone()).mul_(0.5)  # exact symmetry (the GEMM sums are symmetric only to rounding)
        _warn_if_few_samples(self.n, self.dim)
        return (self.shift + mean_c).cpu().numpy(), cov.cpu().numpy()

    # -- persistence ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, torch.Tensor]:
        """CPU tensors ``{"n", "shift", "sum", "sum_outer"}`` (safetensors- and ``torch.save``-friendly)."""
        d = self.dim or 0
        if self.n == 0:
            z = torch.zeros(d, dtype=torch.float64)
            return {"n": torch.tensor(0, dtype=torch.int64), "shift": z, "sum": z.clone(),
                    "sum_outer": torch.zeros(d, d, dtype=torch.float64)}
        return {
            "n": torch.tensor(self.n, dtype=torch.int64),
            "shift": self.shift.cpu().clone(),
            "sum": self.sum.cpu().clone(),
            "sum_outer": self.sum_outer.cpu().clone(),
        }

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, Any], device: str | torch.device | None = None
    ) -> "StreamingMoments":
        """Rebuild a state saved by :meth:`state_dict`; raises ``ValueError`` naming missing or mis-shaped keys."""
        missing = [k for k in cls._KEYS if k not in state]
        if missing:
            raise ValueError(
                f"not a StreamingMoments state: missing keys {missing} (got {sorted(state)}); save it with "
                f"StreamingMoments.state_dict()"
            )
        t = {k: torch.as_tensor(_checks.to_numpy(state[k])) for k in cls._KEYS}
        n = int(t["n"])
        d = t["shift"].shape[0] if t["shift"].ndim == 1 else -1
        shapes = {"shift": (d,), "sum": (d,), "sum_outer": (d, d)}
        for k, shape in shapes.items():
            if tuple(t[k].shape) != shape:
                raise ValueError(
                    f"StreamingMoments state key '{k}' has shape {tuple(t[k].shape)}, expected {shape} for d={d}"
                )
        if n < 0:
            raise ValueError(f"StreamingMoments state has negative count n={n}")
        out = cls(dim=d or None, device=device)
        if n > 0:
            out._allocate(d, out.device or torch.device("cpu"), shift=t["shift"])
            out.sum += t["sum"].to(out.sum)
            out.sum_outer += t["sum_outer"].to(out.sum_outer)
            out.n = n
        return out

    # -- helpers ----------------------------------------------------------------------------

    def _as_tensor(self, feats: Any) -> torch.Tensor:
        if isinstance(feats, torch.Tensor):
            x = feats.detach()
            if self.device is not None:
                x = x.to(self.device)
            x = x.to(torch.float64)
            if x.ndim != 2:
                raise ValueError(f"feats must be a matrix (batch, d), got shape {tuple(x.shape)}")
            if not bool(torch.isfinite(x).all()):
                _checks.check_finite(x.cpu().numpy(), "feats")
        else:
            x = torch.from_numpy(_checks.as_float64(feats, "feats", ndim=2))
            if self.device is not None:
                x = x.to(self.device)
        if self.dim is not None and x.shape[1] != self.dim:
            raise ValueError(f"feats have {x.shape[1]} dims but this StreamingMoments holds {self.dim}-d features")
        return x

    def _allocate(self, d: int, device: torch.device, shift: torch.Tensor) -> None:
        self.dim = d
        self.device = device
        self.shift = shift.detach().to(device=device, dtype=torch.float64).clone()
        self.sum = torch.zeros(d, dtype=torch.float64, device=device)
        self.sum_outer = torch.zeros(d, d, dtype=torch.float64, device=device)


class FrechetDistance:
    """Metric object in the torchmetrics style: ``update(feats, real=...)`` then ``compute()``.

    Keeps one :class:`StreamingMoments` per side (O(d^2) memory whatever the number of images).
    The real side can instead be fixed to precomputed reference statistics with
    :meth:`set_reference` (e.g. the ``mu``/``sigma`` of an ADM reference batch). Objects built
    on different shards or ranks combine with :meth:`merge`.
    """

    def __init__(self, dim: int | None = None, device: str | torch.device | None = None):
        self.real = StreamingMoments(dim, device)
        self.fake = StreamingMoments(dim, device)
        self.reference: tuple[np.ndarray, np.ndarray] | None = None

    def update(self, feats: Any, real: bool) -> None:
        """Accumulate features ``(batch, d)`` of real (reference) or fake (generated) samples."""
        if real and self.reference is not None:
            raise ValueError("reference statistics were set with set_reference(); do not also update(real=True)")
        (self.real if real else self.fake).update(feats)

    def set_reference(self, mu: Any, sigma: Any) -> None:
        """Use fixed reference statistics ``(mu (d,), sigma (d, d))`` as the real side."""
        if self.real.n:
            raise ValueError("real features were already accumulated; call reset(real=True) before set_reference()")
        mu = _checks.as_float64(mu, "mu", ndim=1)
        self.reference = (mu, _covariance(sigma, "sigma", len(mu)))

    def merge(self, other: "FrechetDistance") -> "FrechetDistance":
        """Add the features accumulated by ``other`` (in place); returns ``self``."""
        if other.reference is not None and self.reference is None and self.real.n == 0:
            self.reference = other.reference
        self.real.merge(other.real)
        self.fake.merge(other.fake)
        return self

    def compute(self) -> float:
        """Fréchet distance between the real (or reference) and fake statistics, as a ``float``."""
        mu_r, sigma_r = self.reference if self.reference is not None else self.real.compute()
        mu_f, sigma_f = self.fake.compute()
        return frechet_distance(mu_r, sigma_r, mu_f, sigma_f)

    def reset(self, real: bool = False) -> None:
        """Forget the fake features; also the real features / reference when ``real=True``."""
        self.fake = StreamingMoments(self.fake.dim, self.fake.device)
        if real:
            self.real = StreamingMoments(self.real.dim, self.real.device)
            self.reference = None

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat dict of CPU tensors: ``real.*``, ``fake.*`` and, if set, ``reference.mu``/``reference.sigma``."""
        out = {f"real.{k}": v for k, v in self.real.state_dict().items()}
        out.update({f"fake.{k}": v for k, v in self.fake.state_dict().items()})
        if self.reference is not None:
            out["reference.mu"] = torch.from_numpy(self.reference[0].copy())
            out["reference.sigma"] = torch.from_numpy(self.reference[1].copy())
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.real = StreamingMoments.from_state_dict({k[5:]: v for k, v in state.items() if k.startswith("real.")})
        self.fake = StreamingMoments.from_state_dict({k[5:]: v for k, v in state.items() if k.startswith("fake.")})
        self.reference = None
        if "reference.mu" in state:
            self.set_reference(state["reference.mu"], state["reference.sigma"])
