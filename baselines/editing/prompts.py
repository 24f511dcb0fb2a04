"""From an editing instruction to the prompts a text-to-image denoiser is guided with.

Training-free editors need *descriptions*, not instructions. PIE-Bench gives them (source and editing prompts);
``shapes-edit`` gives instructions in a closed grammar (:func:`cgmbench.worlds.shapes.random_edit`), which these
rules map, deterministically and without looking at the answer.

:func:`edit_prompts` -> ``(prompt, negative prompt)`` (SDEdit, inpainting; the negative prompt takes the place of the
empty prompt in classifier-free guidance, ``e = e(neg) + w (e(prompt) - e(neg))``, the diffusers
``negative_prompt`` convention). :func:`edit_prompt_pair` -> :class:`PromptPair` (prompt-to-prompt: a source
prompt describing the source image, a target prompt, and the words whose attention marks the region to edit).

=================================================  =======================  ===========================  ==============
instruction                                        source prompt            target prompt                negative
=================================================  =======================  ===========================  ==============
``make the <c1> <s> <c2>`` (recolor)               ``a <c1> <s>``           ``a <c2> <s>``               ``a <c1> <s>``
``replace the <c1> <s1> with a <c2> <s2>`` (swap)  ``a <c1> <s1>``          ``a <c2> <s2>``              ``a <c1> <s1>``
``add a <c> <s> <relation> the <c2> <s2>`` (add)   ``a <c2> <s2>``          ``a <c> <s> <relation> a     ``""``
                                                                            <c2> <s2>``
``remove the <c> <s>`` (remove)                    ``a <c> <s>``            ``""`` (empty)               ``a <c> <s>``
``move the <c> <s> <direction>`` (move)            ``a <c> <s>``            ``a <c> <s>``                ``""``
anything else                                      ``""``                   the text as given            ``""``
=================================================  =======================  ===========================  ==============

The ``prompt`` of :func:`edit_prompts` is the target prompt. Blend words (:class:`PromptPair`): the edited object's
shape word in the source prompt (recolor, swap, remove, move) and the new object's in the target prompt (recolor,
swap, add, move). The rule name is recorded in each run's checkpoint provenance (``prompt_rule``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RULE = "shapes-instruction-v2"
_W = r"(\w+)"
_RECOLOR = re.compile(rf"^\s*make the {_W} {_W} {_W}\s*$", re.IGNORECASE)
_SWAP = re.compile(rf"^\s*replace the {_W} {_W} with an? {_W} {_W}\s*$", re.IGNORECASE)
_ADD = re.compile(rf"^\s*add an? {_W} {_W} (to the left of|to the right of|above|below) the {_W} {_W}\s*$",
                  re.IGNORECASE)
_REMOVE = re.compile(rf"^\s*remove the {_W} {_W}\s*$", re.IGNORECASE)
_MOVE = re.compile(rf"^\s*move the {_W} {_W} (left|right|up|down)\s*$", re.IGNORECASE)


def _a(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _np(color: str, shape: str) -> str:
    return f"{_a(color)} {color} {shape}"


@dataclass(frozen=True)
class PromptPair:
    """Prompt-to-prompt's inputs for one edit (see the module docstring)."""

    source: str
    target: str
    negative: str = ""
    blend_source: tuple[str, ...] = ()
    blend_target: tuple[str, ...] = ()
    #: which rule matched: recolor, swap, add, remove, move or free
    kind: str = "free"


def edit_prompt_pair(instruction: str) -> PromptPair:
    """The :class:`PromptPair` of one instruction (see the module docstring)."""
    m = _RECOLOR.match(instruction)
    if m:
        old, shape, new = (g.lower() for g in m.groups())
        return PromptPair(_np(old, shape), _np(new, shape), _np(old, shape), (shape,), (shape,), "recolor")
    m = _SWAP.match(instruction)
    if m:
        c1, s1, c2, s2 = (g.lower() for g in m.groups())
        return PromptPair(_np(c1, s1), _np(c2, s2), _np(c1, s1), (s1,), (s2,), "swap")
    m = _ADD.match(instruction)
    if m:
        c, s, relation, c2, s2 = (g.lower() for g in m.groups())
        return PromptPair(_np(c2, s2), f"{_np(c, s)} {relation} {_np(c2, s2)}", "", (), (s,), "add")
    m = _REMOVE.match(instruction)
    if m:
        color, shape = (g.lower() for g in m.groups())
        return PromptPair(_np(color, shape), "", _np(color, shape), (shape,), (), "remove")
    m = _MOVE.match(instruction)
    if m:
        color, shape, _ = (g.lower() for g in m.groups())
        return PromptPair(_np(color, shape), _np(color, shape), "", (shape,), (shape,), "move")
    return PromptPair("", instruction, "", (), (), "free")


def edit_prompts(instruction: str) -> tuple[str, str]:
    """``(prompt, negative_prompt)`` for one instruction: the target prompt and the negative of the rule."""
    pair = edit_prompt_pair(instruction)
    return pair.target, pair.negative
