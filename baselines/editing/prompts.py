"""From an editing instruction to the (prompt, negative prompt) a text-to-image denoiser is guided with.

Training-free editors (SDEdit, latent-blending inpainting) need a *target description*, not an instruction.
PIE-Bench gives one (``editing_prompt``); ``shapes-edit`` gives instructions in a closed grammar, which this
rule maps, deterministically and without looking at the answer:

=====================================  ===============================  ===========================
instruction                            prompt                           negative prompt
=====================================  ===============================  ===========================
``make the <c1> <shape> <c2>``         ``a <c2> <shape>``               ``a <c1> <shape>``
``remove the <c> <shape>``             ``""`` (empty)                   ``a <c> <shape>``
anything else                          the text as given                ``""``
=====================================  ===============================  ===========================

The negative prompt takes the place of the empty prompt in classifier-free guidance
(``e = e(neg) + w (e(prompt) - e(neg))``, the diffusers ``negative_prompt`` convention). The rule is recorded in
each run's checkpoint provenance (``prompt_rule``).
"""

from __future__ import annotations

import re

RULE = "shapes-instruction-v1"
_RECOLOR = re.compile(r"^\s*make the (\w+) (\w+) (\w+)\s*$", re.IGNORECASE)
_REMOVE = re.compile(r"^\s*remove the (\w+) (\w+)\s*$", re.IGNORECASE)


def _a(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def edit_prompts(instruction: str) -> tuple[str, str]:
    """``(prompt, negative_prompt)`` for one instruction (see the module docstring)."""
    m = _RECOLOR.match(instruction)
    if m:
        old, shape, new = (g.lower() for g in m.groups())
        return f"{_a(new)} {new} {shape}", f"{_a(old)} {old} {shape}"
    m = _REMOVE.match(instruction)
    if m:
        color, shape = (g.lower() for g in m.groups())
        return "", f"{_a(color)} {color} {shape}"
    return instruction, ""
