"""The suite's one guidance convention.

``guidance_scale = w`` in ``pred = uncond + w * (cond - uncond)``:

* ``w = 1`` is plain conditional sampling, ``w = 0`` unconditional, ``w > 1`` guided.
* Ho & Salimans (2021) write ``(1 + w') * cond - w' * uncond``; ours is ``w = w' + 1``.
* DiT's ``cfg_scale``, CompVis' ``unconditional_guidance_scale`` (LDM, Stable Diffusion) and
  SD3's ``cfg`` are already this ``w``: their published settings (DiT 1.5 for FID, 4.0 for
  pictures; LDM-txt2img 1.5 for COCO FID; SD3 5.0) carry over unchanged.
* GANs have no guidance; their fidelity/diversity knob is ``truncation``.

Sweeps and Pareto plots use only this scale.
"""

from __future__ import annotations

from dataclasses import dataclass

GUIDANCE_KNOB = "guidance_scale"


@dataclass(frozen=True)
class GuidanceScale:
    """A guidance scale ``w`` in the suite's convention (see the module docstring)."""

    w: float

    @classmethod
    def from_ho_salimans(cls, w_prime: float) -> "GuidanceScale":
        """From Ho & Salimans' ``(1 + w')·cond − w'·uncond``: ``w = w' + 1``."""
        return cls(float(w_prime) + 1.0)

    def to_ho_salimans(self) -> float:
        return self.w - 1.0

    def apply(self, cond, uncond):
        """``uncond + w · (cond − uncond)``; works on tensors and floats."""
        return uncond + self.w * (cond - uncond)
