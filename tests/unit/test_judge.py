"""The shapes world's exact judge: >= 0.99 on real world samples, near chance on noise."""

import numpy as np
import pytest

from cgmbench.sources.base import open_source
from cgmbench.spec.task import load_task
from cgmbench.worlds import judge as J
from cgmbench.worlds import shapes as W

SHAPES_TASKS = ["shapes-cc", "shapes-t2i", "shapes-paired", "shapes-unpaired", "shapes-edit", "shapes-t2v"]


@pytest.mark.parametrize("task_name", SHAPES_TASKS)
@pytest.mark.slow
def test_judge_on_real_world_samples(task_name):
    task = load_task(task_name)
    source = open_source(task)
    idx = list(range(150))
    # the true targets (what the reference set holds) and fresh real samples (the oracle)
    targets = np.stack([source._render_target(source.item(i)["scene"]) for i in idx])
    oracle = source.oracle(idx, [1000 + i for i in idx])
    for samples in (targets, oracle):
        overall = np.mean([r["overall"] for r in source.judge(samples, idx)])
        assert overall >= 0.99, (task_name, overall)


@pytest.mark.parametrize("task_name", SHAPES_TASKS)
def test_judge_on_noise_is_near_chance(task_name):
    task = load_task(task_name)
    source = open_source(task)
    rng = np.random.default_rng(0)
    idx = list(range(100))
    noise = rng.integers(0, 256, (len(idx), *task.sample_shape()), dtype=np.uint8)
    results = source.judge(noise, idx)
    overall = np.mean([r["overall"] for r in results])
    # chance for an 18-way class is 1/18; compositional checks are stricter still
    assert overall <= 1 / 18, (task_name, overall)


def test_judge_at_64_pixels_and_in_both_styles():
    for seed in range(60):
        rng = np.random.default_rng(seed)
        spec = W.random_prompt_spec(rng)
        scene = W.scene_for_prompt(spec, rng, 64)
        for style in ("flat", "textured"):
            assert J.judge_prompt(W.render(scene, style), spec)["overall"], (seed, style, spec)


def test_judge_detects_wrong_attributes():
    rng = np.random.default_rng(3)
    label, scene = W.random_class_scene(rng, 32)
    image = W.render(scene)
    shape, color = W.class_attributes(label)
    other_color = next(c for c in W.COLORS if c != color)
    assert J.judge_class(image, label)["overall"]
    assert not J.judge_class(image, W.class_index(shape, other_color))["overall"]
    spec = {"type": "relation", "relation": "above", "caption": "",
            "objects": [{"shape": "square", "color": "red", "size": "small"},
                        {"shape": "circle", "color": "blue", "size": "small"}]}
    swapped = W.Scene((W.ShapeObject("square", "red", "small", 16, 24), W.ShapeObject("circle", "blue", "small", 16, 6)), 32)
    result = J.judge_prompt(W.render(swapped), spec)
    assert result["binding"] and not result["position"] and not result["overall"]


def test_pixel_classes_match_label_map():
    scene = W.random_scene(np.random.default_rng(5), 32)
    truth = W.label_map_classes(W.render_label_map(scene))
    pred = J.color_classes(W.render(scene, "textured"))
    assert (truth == pred).mean() == 1.0


def test_aggregate_reports_interval_and_attributes():
    per = [{"color": True, "overall": True}, {"color": False, "overall": False}] * 10
    agg = J.aggregate(per)
    assert agg["overall"]["value"] == 0.5 and agg["overall"]["n"] == 20
    lo, hi = agg["overall"]["ci95"]
    assert 0.2 < lo < 0.5 < hi < 0.8
    assert agg["attributes"]["color"]["value"] == 0.5
