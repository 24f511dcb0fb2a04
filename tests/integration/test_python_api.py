"""The Python API (``cgmbench.fid``, ``evaluate``, ``run``, ``load_*``, ``register_*``) against the command line,
independent computations and the README's examples. Offline: the shipped ``shapes-cnn`` extractor and the
shapes world only."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import cgmbench
from cgmbench.errors import CgmbenchError
from cgmbench.images import save_png
from cgmbench.worlds.shapes import random_scene, render

REPO = Path(__file__).resolve().parents[2]


def _images(n: int, seed: int, resolution: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([render(random_scene(rng, resolution)) for _ in range(n)])


def _folder(path: Path, images: np.ndarray) -> Path:
    path.mkdir(parents=True)
    for i, image in enumerate(images):
        save_png(image, path / f"{i:03d}.png")
    return path


@pytest.fixture()
def pngs(tmp_path):
    a, b = _images(12, seed=1), _images(10, seed=2)
    return a, b, _folder(tmp_path / "a", a), _folder(tmp_path / "b", b)


def _cli_json(argv, capsys) -> dict:
    from cgmbench.cli.main import main

    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small N: singular-covariance warnings are expected
        yield


# ------------------------------------------------------------------------------------ import


@pytest.mark.slow
def test_import_is_light_and_run_is_both_the_function_and_the_subpackage():
    light = "import sys, cgmbench; assert 'torch' not in sys.modules and 'numpy' not in sys.modules; "
    code = ("import sys, cgmbench; import cgmbench.run.runner as r;"
            "assert callable(cgmbench.run) and cgmbench.run.runner is r;"
            "assert cgmbench.run is sys.modules['cgmbench.run'];"
            "from cgmbench import run, fid; assert run is cgmbench.run and fid.__module__ == 'cgmbench.scoring.fid';"
            "print('ok')")
    for prefix in (light, "import cgmbench.run.runner; "):  # whichever is imported first
        out = subprocess.run([sys.executable, "-c", prefix + code], cwd=REPO, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
        assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    with pytest.raises(AttributeError):
        cgmbench.no_such_thing  # noqa: B018


def test_the_reexports_are_the_registries():
    from cgmbench.extractors.registry import register_extractor
    from cgmbench.models.registry import register_model
    from cgmbench.sources.base import register_source
    from cgmbench.spec.task import load_task

    assert cgmbench.register_model is register_model and cgmbench.register_extractor is register_extractor
    assert cgmbench.register_source is register_source and cgmbench.load_task is load_task
    assert set(cgmbench.__all__) <= set(dir(cgmbench))


# ------------------------------------------------------------------------------------ fid


def test_fid_equals_the_command_line_and_an_independent_computation(pngs, capsys):
    import scipy.linalg

    a, b, dir_a, dir_b = pngs
    with _quiet():
        ours = cgmbench.fid(dir_a, dir_b, extractor="shapes-cnn", batch_size=5)
        cli = _cli_json(["fid", str(dir_a), str(dir_b), "--extractor", "shapes-cnn", "--batch-size", "5", "--json"],
                        capsys)
    assert json.loads(json.dumps(ours)) == cli  # the whole object, the number bit for bit
    assert ours["n"] == [12, 10] and ours["extractor"] == "shapes-cnn" and ours["protocol"] == "clean"

    # independently: features of each image set, numpy moments, scipy's matrix square root
    from cgmbench.extractors import get_extractor

    ext = get_extractor("shapes-cnn")
    fa, fb = (ext(torch.from_numpy(x)).double().numpy() for x in (a, b))
    mu_a, mu_b, s_a, s_b = fa.mean(0), fb.mean(0), np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_a @ s_b).real
    expected = float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))
    assert ours["fid"] == pytest.approx(expected, rel=1e-4)


def test_arrays_numpy_or_torch_give_the_folder_number(pngs):
    a, b, dir_a, dir_b = pngs
    with _quiet():
        from_folders = cgmbench.fid(dir_a, dir_b, extractor="shapes-cnn")["fid"]
        assert cgmbench.fid(a, b, extractor="shapes-cnn")["fid"] == from_folders
        assert cgmbench.fid(torch.from_numpy(a), dir_b, extractor="shapes-cnn")["fid"] == from_folders
        # identical sets: zero up to the rounding of singular 256-d covariances (12 images)
        assert cgmbench.fid(a, a, extractor="shapes-cnn")["fid"] == pytest.approx(0.0, abs=1e-2)


def test_saved_statistics_round_trip(pngs, capsys):
    from cgmbench.scoring.evaluate import task_stats
    from cgmbench.sources.base import open_source

    _, b, _, dir_b = pngs
    with _quiet():
        row = task_stats("shapes-t2i", max_images=40, batch_size=40, log=lambda m: None)[0]
        npz = row["path"]
        assert row["extractor"] == "shapes-cnn" and Path(npz).suffix == ".npz"
        task = cgmbench.load_task("shapes-t2i")
        refs = open_source(task, "reference").references(list(range(40)))
        from_stats = cgmbench.fid(npz, b, batch_size=40)  # extractor and protocol read from the statistics
        from_images = cgmbench.fid(refs, b, extractor="shapes-cnn", batch_size=40)
        cli = _cli_json(["fid", npz, str(dir_b), "--batch-size", "40", "--json"], capsys)
        both = cgmbench.fid(npz, npz)
    assert from_stats["fid"] == pytest.approx(from_images["fid"], rel=1e-9)
    assert from_stats["n"] == [40, 10] and from_stats["extractor"] == "shapes-cnn"
    assert json.loads(json.dumps(from_stats))["fid"] == cli["fid"]
    assert both["fid"] == pytest.approx(0.0, abs=1e-2) and both["weights_sha256"] == row["weights_sha256"]
    # protocols are never mixed
    with pytest.raises(CgmbenchError, match="protocol"):
        cgmbench.fid(npz, b, protocol="tf-exact")
    # an edited statistics file is refused (content sha256 recorded beside it)
    with np.load(npz) as data:
        arrays = dict(data)
    arrays["mu"] = arrays["mu"] + 1
    np.savez(npz, **arrays)
    with pytest.raises(CgmbenchError, match="corrupt or edited"):
        cgmbench.fid(npz, b)


@pytest.mark.parametrize("value, message", [
    (np.zeros((4, 3, 16, 16), np.float32), "uint8"),
    (np.zeros((4, 16, 16), np.uint8), "shape"),
    ([1, 2, 3], "got list"),
    ("missing.npz", "does not exist"),
    ("missing-folder", "does not exist"),
    (np.zeros((1, 3, 16, 16), np.uint8), "at least 2"),
])
def test_fid_bad_inputs_are_user_errors(tmp_path, monkeypatch, value, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CgmbenchError, match=message):
        cgmbench.fid(value, np.zeros((4, 3, 16, 16), np.uint8), extractor="shapes-cnn")


# ------------------------------------------------------------------------------------ run and evaluate


@pytest.fixture()
def oracle_run(tmp_path):
    return cgmbench.run("shapes-t2i", "oracle", num_samples=16, out=str(tmp_path / "oracle"), device="cpu",
                       progress=False, log=lambda m: None), tmp_path / "oracle"


def _plain(x):
    return json.loads(json.dumps(x))


@pytest.mark.slow
def test_run_equals_the_runner_and_evaluate_rescores_every_form(oracle_run, tmp_path):
    from cgmbench.run.config import RunConfig
    from cgmbench.run.runner import run
    from cgmbench.run.samples import SampleStore

    record, out = oracle_run
    assert _plain(record) == json.loads((out / "run.json").read_text())
    other = run(RunConfig(task="shapes-t2i", model="oracle", num_samples=16, out=str(tmp_path / "cli"),
                          progress=False), log=lambda m: None)
    assert record["identity_sha256"] == other["identity_sha256"]
    assert record["metrics"]["judge"]["overall"]["value"] >= 0.99

    samples = SampleStore.open(out / "samples").read(0, 16)
    with _quiet():
        for form in (out, out / "samples", str(out), samples, torch.from_numpy(samples)):
            task = None if isinstance(form, (str, Path)) else "shapes-t2i"
            assert _plain(cgmbench.evaluate(form, task=task, log=lambda m: None)) == _plain(record["metrics"]), form
        noise = np.random.default_rng(0).integers(0, 256, samples.shape, dtype=np.uint8)
        assert cgmbench.evaluate(noise, task="shapes-t2i", log=lambda m: None)["judge"]["overall"]["value"] == 0.0


@pytest.mark.slow
def test_evaluate_and_run_errors(oracle_run):
    record, out = oracle_run
    with pytest.raises(CgmbenchError, match="needs task"):
        cgmbench.evaluate(np.zeros((2, 3, 64, 64), np.uint8))
    with pytest.raises(CgmbenchError, match="samples are"):
        cgmbench.evaluate(np.zeros((2, 3, 17, 17), np.uint8), task="shapes-t2i")
    with pytest.raises(CgmbenchError, match="not shapes-cc"):
        cgmbench.evaluate(out, task="shapes-cc")
    with pytest.raises(CgmbenchError, match="neither a run.json"):
        cgmbench.evaluate(out.parent)
    with pytest.raises(CgmbenchError, match="unknown option"):
        cgmbench.run("shapes-t2i", "oracle", num_sampels=4)
    # a TaskSpec works as the task; resuming a complete run returns its record unchanged
    again = cgmbench.run(cgmbench.load_task("shapes-t2i"), "oracle", num_samples=16, out=str(out), resume=True,
                         device="cpu", log=lambda m: None)
    assert again["identity_sha256"] == record["identity_sha256"]
    with pytest.raises(CgmbenchError, match="already holds a complete run"):
        cgmbench.run("shapes-t2i", "oracle", num_samples=16, out=str(out), device="cpu", log=lambda m: None)


def test_load_task_and_load_model():
    task = cgmbench.load_task("shapes-t2i")
    model = cgmbench.load_model("oracle", "shapes-t2i")
    assert model.name == "oracle" and task.name == "shapes-t2i"
    with pytest.raises(CgmbenchError, match="unknown model"):
        cgmbench.load_model("no-such-model", task)


# ------------------------------------------------------------------------------------ register_source


def test_register_source_makes_a_task_usable(tmp_path):
    from cgmbench.sources.base import SOURCES, Source, open_source
    from cgmbench.worlds.sources import ShapesSource

    class Mine(ShapesSource):
        pass

    try:
        cgmbench.register_source("mine-test", Mine)
        text = Path(cgmbench.load_task("shapes-t2i").path).read_text()
        spec = tmp_path / "shapes-t2i.toml"  # the file name is the task name
        spec.write_text(re.sub(r'(\[conditions\][^\[]*?source = )"shapes"', r'\1"mine-test"', text, count=1))
        task = cgmbench.load_task(str(spec))
        assert task.conditions["source"] == "mine-test" and type(open_source(task)) is Mine
        with pytest.raises(CgmbenchError, match="already registered"):
            cgmbench.register_source("mine-test", Mine)
        with pytest.raises(CgmbenchError, match="not a cgmbench.sources.base.Source"):
            cgmbench.register_source("other-test", dict)
        with pytest.raises(CgmbenchError, match="module:Class"):
            cgmbench.register_source("other-test", "no_colon")
        cgmbench.register_source("broken-test", "no_such_module_xyz:Thing")
        broken = cgmbench.load_task(str(spec))
        broken.conditions["source"] = "broken-test"
        with pytest.raises(CgmbenchError, match="could not be imported"):
            open_source(broken)
        assert issubclass(Mine, Source)
    finally:
        for name in ("mine-test", "other-test", "broken-test"):
            SOURCES.pop(name, None)


# ------------------------------------------------------------------------------------ README


@pytest.mark.slow
def test_the_readme_python_api_examples_run(tmp_path, monkeypatch):
    text = (REPO / "README.md").read_text()
    start = text.index("## Python API")
    section = text[start:text.index("\n## ", start + 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks and 5 <= sum(b.count("\n") for b in blocks) <= 15
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CGMBENCH_RUNS", str(tmp_path / "runs-default"))
    with _quiet():
        for block in blocks:
            exec(compile(block, "README.md#python-api", "exec"), {"__name__": "__readme__"})
    record = json.loads((tmp_path / "runs" / "oracle" / "run.json").read_text())
    assert record["n"] == 16 and record["model"]["name"] == "oracle"
