"""Class-conditional sample grids name the class of each column ("red square", "digit 3"), not its number."""

from __future__ import annotations

import pytest

from cgmbench.results.plots import _column_titles
from cgmbench.run.samples import SampleStore
from cgmbench.sources.base import LabelSource, open_source
from cgmbench.spec.task import load_task
from cgmbench.worlds.shapes import COLORS, SHAPES, class_index


@pytest.mark.slow  # loads scikit-learn's digits
def test_sources_name_their_classes():
    shapes = open_source(load_task("shapes-cc"))
    assert shapes.class_name(class_index("square", "red")) == "red square"
    assert shapes.class_name(class_index("triangle", "magenta")) == "magenta triangle"
    assert sorted(shapes.class_name(k) for k in range(18)) == sorted(f"{c} {s}" for s in SHAPES for c in COLORS)
    assert open_source(load_task("digits-cc")).class_name(3) == "digit 3"
    assert LabelSource(load_task("imagenet256-cc"), {"num_classes": 1000}).class_name(7) == "class 7"


def test_sample_grid_columns_show_class_names(tmp_path):
    SampleStore.create(tmp_path / "samples", {"task": "shapes-cc"}, (3, 32, 32))
    labels = open_source(load_task("shapes-cc")).conditions(list(range(4))).labels.tolist()
    titles = _column_titles(tmp_path, 4)
    expected = [f"#{i}\n{COLORS[c % 6]} {SHAPES[c // 6]}" for i, c in enumerate(labels)]
    assert titles == expected and not any("class" in t for t in titles)
