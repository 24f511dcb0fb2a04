"""Latte's sampling plumbing shared by the generator and the training recipe: building a cgmbench-trained
network from its configuration, the network in the ADM sampler's ``(N, C, F, h, w)`` layout, and per-sample
video noise drawn in the official frames-first order."""

from __future__ import annotations

from typing import Sequence

import torch

from baselines.common.text_encoders import ShapesWordEncoder, ShapesWordEncoderConfig
from baselines.latte.models import Latte
from cgmbench.diffusion import PerSampleNoise, create_diffusion, per_sample_noise
from cgmbench.errors import CgmbenchError

__all__ = ["build_latte", "latte_diffusion", "video_noise", "latte_eps_model"]


def build_latte(config: dict) -> tuple[Latte, ShapesWordEncoder | None]:
    """The networks of a cgmbench-trained Latte: ``config["latte"]`` Latte kwargs, ``config["text_encoder"]``."""
    model = Latte(**config["latte"])
    text = None
    if config.get("text_encoder") is not None:
        text = ShapesWordEncoder(ShapesWordEncoderConfig(**config["text_encoder"]))
    return model, text


def latte_diffusion(prediction: str = "eps", learn_sigma: bool = True, timestep_respacing: str = ""):
    """The one diffusion of a Latte, for training (``timestep_respacing=""``: all 1000 steps) and sampling
    (``"50"``, ``"ddim50"``, ...): 1000 linear-beta steps; the network's first ``C`` output channels are the
    ``prediction`` (``"eps"``, the official Latte, or ``"x0"``); with ``learn_sigma`` the other ``C`` are the
    learned-range variance (DiT/Latte), else the variance is the fixed large one."""
    if prediction not in ("eps", "x0"):
        raise CgmbenchError(f"unknown Latte prediction {prediction!r}", "a Latte predicts 'eps' or 'x0'")
    return create_diffusion(timestep_respacing, predict_xstart=prediction == "x0", learn_sigma=bool(learn_sigma))


def video_noise(generators: Sequence[torch.Generator], frames: int, channels: int, side: int,
                device=None) -> torch.Tensor:
    """Initial noise in the sampler layout ``(N, C, F, h, w)``, row ``i`` one ``randn(F, C, h, w)`` draw of
    ``generators[i]`` (the official frames-first order) covering all of the sample's frames."""
    return per_sample_noise(generators, (frames, channels, side, side), device=device).transpose(1, 2)


class _VideoStepNoise:
    """Per-step noise for the ``(N, C, F, h, w)`` sampler state, drawn per sample in ``(F, C, h, w)`` order."""

    def __init__(self, generators, device=None):
        self.inner = PerSampleNoise(generators, device=device)

    def __call__(self, step_index: int, shape):
        n, c, f = shape[0], shape[1], shape[2]
        return self.inner(step_index, (n, f, c, *shape[3:])).transpose(1, 2)


def latte_eps_model(model: Latte):
    """``fn(x (N, C, F, h, w), t, **kw) -> (N, C_out, F, h, w)``: the network in the sampler's layout."""

    def fn(x, t, **kwargs):
        return model(x.transpose(1, 2), t, **kwargs).transpose(1, 2)

    return fn
