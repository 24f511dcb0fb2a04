"""Default axes of the Pareto plot, one table keyed by task kind.

A conditional generator trades **fidelity** (how real the samples look: a distance to the real data, lower is
better) against **adherence** (how well they follow the condition: higher is better), and guidance, truncation or
edit strength move it along that curve. So the default plot of every kind puts an adherence metric on x and a
fidelity metric on y; editing puts edit success on x and background preservation on y. Two distances (FID against
KID) are never a default: they measure the same thing and show no trade-off.

:data:`PARETO_AXES` lists, per kind, ``(x, y)`` pairs in order of preference; the first pair whose two metrics are
both recorded is the default (:func:`resolve_axes`). Given only ``--x``, y is the kind's preferred y that is
recorded (and is not x); given only ``--y``, x likewise. A task kind without a recorded pair has no default: the
user names the axes.
"""

from __future__ import annotations

from cgmbench.errors import CgmbenchError

#: task kind -> ``(x, y)`` candidate pairs, best first: x = adherence (or edit success), y = fidelity (or preservation)
PARETO_AXES: dict[str, tuple[tuple[str, str], ...]] = {
    "text-to-image": (("clip_score", "fid"), ("judge", "fid"), ("r_precision", "fid"), ("clip_score", "cmmd"),
                      ("is", "fid")),
    "class-conditional": (("judge", "fid"), ("is", "fid"), ("precision_recall", "fid"),
                          ("clip_frame_consistency", "fvd")),  # the last: class-conditional video (ucf101-cc)
    "paired-translation": (("judge", "fid"), ("fcn_score", "fid"), ("ssim", "fid")),
    "unpaired-translation": (("judge", "fid"),),
    "editing": (("edit_success", "psnr_bg"), ("clip_direction_shapes_clip", "psnr_bg"),
                ("edit_success", "lpips_bg"), ("clip_direction_shapes_clip", "lpips_bg")),
    "inpainting": (("psnr", "lpips_bg"), ("ssim", "lpips_bg"), ("psnr", "lpips")),
    "text-to-video": (("motion_accuracy", "fvd"), ("judge", "fvd"), ("clip_frame_consistency", "fvd")),
}


def resolve_axes(kind: str, recorded, x: str | None = None, y: str | None = None) -> tuple[str, str]:
    """The ``(x, y)`` metrics to plot for a task of ``kind`` whose runs record the metrics ``recorded``.

    ``x`` / ``y`` given by the user are kept as they are (a name that is not recorded fails later, naming what
    is); the missing one comes from :data:`PARETO_AXES` (see the module docstring)."""
    if x is not None and y is not None:
        return x, y
    avail = set(recorded)
    pairs = PARETO_AXES.get(kind, ())
    shown = ", ".join(sorted(avail)) or "none"
    if x is None and y is None:
        for px, py in pairs:
            if px in avail and py in avail:
                return px, py
        raise CgmbenchError(f"no default Pareto axes for a {kind} task whose runs record {shown}",
                            "choose the two metrics with --x and --y")
    if x is not None:
        for _, py in pairs:
            if py in avail and py != x:
                return x, py
        raise CgmbenchError(f"--x {x}: no default y axis for a {kind} task among the recorded metrics ({shown})",
                            "choose it with --y")
    for px, _ in pairs:
        if px in avail and px != y:
            return px, y
    raise CgmbenchError(f"--y {y}: no default x axis for a {kind} task among the recorded metrics ({shown})",
                        "choose it with --x")
