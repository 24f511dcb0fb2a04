"""Default Pareto axes per task kind (cgmbench/results/axes.py)."""

import pytest

from cgmbench.catalog import direction
from cgmbench.conditions import TASK_KINDS
from cgmbench.errors import CgmbenchError
from cgmbench.results.axes import PARETO_AXES, resolve_axes


def test_every_kind_has_axes_and_none_is_two_distances():
    assert set(PARETO_AXES) == set(TASK_KINDS)
    for kind, pairs in PARETO_AXES.items():
        assert pairs, kind
        for x, y in pairs:
            # x is what the condition asks for (higher is better); y is never a second distance next to one
            assert direction(x) == "max", (kind, x)
            assert x != y and not (direction(x) == "min" and direction(y) == "min"), (kind, x, y)


@pytest.mark.parametrize("kind,recorded,expected", [
    ("text-to-image", {"judge", "fid", "clip_score"}, ("clip_score", "fid")),
    ("text-to-image", {"judge", "fid"}, ("judge", "fid")),  # CLIP weights missing: the judge
    ("class-conditional", {"judge", "fid", "kid", "precision_recall"}, ("judge", "fid")),
    ("class-conditional", {"fid", "kid", "precision_recall"}, ("precision_recall", "fid")),  # digits-cc
    ("class-conditional", {"fid", "is", "precision_recall"}, ("is", "fid")),  # imagenet256-cc
    ("paired-translation", {"judge", "fid", "kid", "lpips", "psnr", "ssim"}, ("judge", "fid")),
    ("unpaired-translation", {"judge", "fid", "kid", "cycle_error"}, ("judge", "fid")),
    ("editing", {"judge", "psnr", "edit_success", "psnr_bg", "lpips_bg", "clip_direction_shapes_clip"},
     ("edit_success", "psnr_bg")),
    ("text-to-video", {"judge", "fvd", "motion_accuracy", "temporal_flickering"}, ("motion_accuracy", "fvd")),
])
def test_default_pair_per_kind(kind, recorded, expected):
    assert resolve_axes(kind, recorded) == expected


def test_two_distances_only_is_no_default():
    # digits-cc-like runs that record only FID and KID: no trade-off can show, so no default
    with pytest.raises(CgmbenchError, match="no default Pareto axes for a class-conditional task.*--x and --y"):
        resolve_axes("class-conditional", {"fid", "kid"})


def test_x_given_keeps_x_and_takes_the_kinds_y():
    assert resolve_axes("class-conditional", {"fid", "kid", "precision_recall"}, x="precision_recall") == \
        ("precision_recall", "fid")
    assert resolve_axes("editing", {"edit_success", "psnr_bg", "lpips_bg"}, x="lpips_bg") == ("lpips_bg", "psnr_bg")
    # the kind's y equals the given x: the next recorded y
    assert resolve_axes("inpainting", {"psnr", "lpips_bg", "lpips"}, x="lpips_bg") == ("lpips_bg", "lpips")
    with pytest.raises(CgmbenchError, match="--x judge: no default y axis.*--y"):
        resolve_axes("text-to-image", {"judge"}, x="judge")


def test_y_given_keeps_y_and_takes_the_kinds_x():
    assert resolve_axes("text-to-image", {"judge", "fid", "clip_score"}, y="judge") == ("clip_score", "judge")
    assert resolve_axes("text-to-image", {"judge", "fid", "clip_score"}, y="clip_score") == ("judge", "clip_score")
    assert resolve_axes("class-conditional", {"judge", "fid", "kid"}, y="kid") == ("judge", "kid")
    with pytest.raises(CgmbenchError, match="--y fid: no default x axis.*--x"):
        resolve_axes("class-conditional", {"fid", "kid"}, y="fid")


def test_both_given_are_kept_as_they_are():
    assert resolve_axes("text-to-image", {"judge"}, x="kid", y="fid") == ("kid", "fid")
