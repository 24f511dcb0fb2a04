"""Adding a baseline or a metric touches only its own files and an entry point, exactly as a third party would.

Each test writes a plugin into a temporary folder (a package + a ``*.dist-info`` whose ``entry_points.txt``
names it), puts that folder on ``PYTHONPATH`` and drives the real command line in a subprocess: nothing of
``cgmbench/``, ``baselines/`` or ``tasks/`` changes.
"""

from __future__ import annotations

import pytest

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _plugin(root: Path, dist: str, files: dict[str, str], entry_points: str) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


def _cgmbench(root: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cgmbench", *argv], capture_output=True, text=True, env=env,
                          timeout=300, cwd=root)


TOY_BASELINE = {
    "toyfamily/__init__.py": '"""A toy baseline family: one folder."""\n',
    "toyfamily/generator.py": '''
        import torch

        from cgmbench.generator import CheckpointInfo, Generator, Knob
        from cgmbench.seeding import torch_generator


        class ToyGenerator(Generator):
            """Paints each class-conditional sample one grey level per class, plus seeded noise."""

            condition_kinds = frozenset({"class"})
            knobs = (Knob("amplitude", 8.0, "noise amplitude in uint8 levels", "float", 0.0, 64.0),)
            description = "toy class-conditional baseline (test plugin)"

            @classmethod
            def load(cls, task, variant=None, checkpoint=None, device="cpu"):
                return cls((task.resolution, task.resolution), checkpoint=CheckpointInfo("toy:none"), device=device)

            def generate(self, conditions, seeds, amplitude=8.0):
                out = []
                for label, seed in zip(conditions.labels.tolist(), seeds):
                    g = torch_generator(seed)
                    noise = torch.rand((3, *self.resolution), generator=g) * amplitude
                    out.append((10.0 * label + noise).clamp(0, 255).round().to(torch.uint8))
                return torch.stack(out)
    ''',
}


def test_a_toy_baseline_is_one_folder_and_an_entry_point(tmp_path):
    _plugin(tmp_path, "toyfamily", TOY_BASELINE, "[cgmbench.models]\ntoy = toyfamily.generator:ToyGenerator\n")
    listed = _cgmbench(tmp_path, "list", "models")
    assert listed.returncode == 0 and "toy" in listed.stdout, listed.stderr
    out = tmp_path / "run"
    res = _cgmbench(tmp_path, "run", "--task", "shapes-cc", "--model", "toy", "--num-samples", "12",
                    "--knob", "amplitude=4", "--out", str(out), "--device", "cpu")
    assert res.returncode == 0, res.stderr[-2000:]
    rec = json.loads((out / "run.json").read_text())
    assert rec["model"]["name"] == "toy" and rec["model"]["knobs"] == {"amplitude": 4.0}
    assert 0.0 <= rec["metrics"]["judge"]["overall"]["value"] <= 1.0
    bad = _cgmbench(tmp_path, "run", "--task", "shapes-t2i", "--model", "toy", "--num-samples", "2",
                    "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "does not accept 'text' conditions" in bad.stderr


TOY_METRIC = {
    "toymetric/__init__.py": '''
        """A toy metric: the mean pixel level of the samples, with a bootstrap interval over samples."""
        import numpy as np

        from cgmbench.catalog import MetricSpec, register_metric


        def mean_level_entry(inputs):
            levels = np.concatenate([arr.reshape(len(arr), -1).mean(axis=1) / 255.0
                                     for _, arr in inputs.store.iter_batches(inputs.n)])
            rng = np.random.default_rng(inputs.seed)
            boot = [levels[rng.integers(0, len(levels), len(levels))].mean() for _ in range(200)]
            return {"value": float(levels.mean()), "ci95": [float(np.percentile(boot, 2.5)),
                    float(np.percentile(boot, 97.5))], "n": int(inputs.n), "method": "mean pixel level / 255"}


        register_metric(MetricSpec("mean_level", "max", "samples", "mean pixel level / 255",
                                   compute=mean_level_entry))
    ''',
}


def test_a_toy_metric_is_one_module_and_a_catalog_entry(tmp_path):
    _plugin(tmp_path, "toymetric", TOY_METRIC, "[cgmbench.metrics]\nmean_level = toymetric\n")
    spec = (REPO / "tasks" / "shapes-cc.toml").read_text()
    spec = spec.replace('name = "shapes-cc"', 'name = "shapes-cc-toy"')
    spec = spec.replace('compute = [', 'compute = ["mean_level", ', 1)
    task = tmp_path / "shapes-cc-toy.toml"
    task.write_text(spec)
    out = tmp_path / "run"
    res = _cgmbench(tmp_path, "run", "--task", str(task), "--model", "noise", "--num-samples", "16",
                    "--out", str(out), "--device", "cpu")
    assert res.returncode == 0, res.stderr[-2000:]
    rec = json.loads((out / "run.json").read_text())
    from cgmbench.run.samples import SampleStore

    samples = SampleStore.open(out / "samples").read(0, 16)
    expected = float(np.mean(samples.reshape(16, -1).mean(axis=1) / 255.0))
    entry = rec["metrics"]["mean_level"]
    assert abs(entry["value"] - expected) < 1e-12 and entry["ci95"][0] <= entry["value"] <= entry["ci95"][1]
    # the catalog gives the leaderboard its direction: it ranks on the toy metric
    board = _cgmbench(tmp_path, "leaderboard", "--task", str(task), "--runs", str(out), "--metric", "mean_level")
    assert board.returncode == 0 and "mean_level" in board.stdout, board.stderr
    # without the plugin the task names an unknown metric: one clear line
    env_less = subprocess.run([sys.executable, "-m", "cgmbench", "info", str(task)], capture_output=True, text=True,
                              cwd=REPO, timeout=120)
    assert env_less.returncode == 2 and "unknown metric(s) ['mean_level']" in env_less.stderr
