"""The command line: the main job, and one clear error line (exit 2, no record) for every bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from cgmbench.cli.main import build_parser, main
from cgmbench.conditions import CONDITION_KINDS
from cgmbench.generator import Generator, Knob
from cgmbench.images import save_png
from cgmbench.models.registry import register_model
from cgmbench.spec.task import list_tasks, load_task


class ClassOnly(Generator):
    name = "classonly"
    condition_kinds = frozenset({"class"})
    knobs = (Knob("guidance_scale", 1.5, "w", minimum=0.0, maximum=20.0),
             Knob("steps", 50, "sampler steps", kind="int", minimum=1, maximum=1000))

    @classmethod
    def load(cls, task, variant=None, checkpoint=None, device="cpu"):
        from cgmbench.weights import resolve

        if variant == "official":
            resolve("dit:xl-2-256")
        return cls((task.resolution, task.resolution))

    def generate(self, conditions, seeds, **knobs):  # pragma: no cover - never reached in these tests
        raise AssertionError


class Everything(ClassOnly):
    condition_kinds = frozenset(CONDITION_KINDS)


@pytest.fixture(autouse=True)
def _models():
    register_model("classonly", ClassOnly)
    register_model("everything", Everything)


def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cgmbench: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.slow
def test_run_prints_result_and_writes_record(tmp_path, capsys):
    code, out, _ = cli(capsys, "run", "--task", "shapes-t2i", "--model", "oracle", "--num-samples", "32",
                       "--out", str(tmp_path / "r"))
    assert code == 0 and "judge: 1.0000" in out
    rec = json.loads((tmp_path / "r" / "run.json").read_text())
    assert rec["n"] == 32


def test_list_and_info(capsys):
    code, out, _ = cli(capsys, "list", "tasks")
    assert code == 0 and "shapes-t2i" in out and "coco-t2i" in out
    code, out, _ = cli(capsys, "info", "shapes-edit")
    assert code == 0 and json.loads(out)["condition_kind"] == "image+text"
    code, out, _ = cli(capsys, "info", "noise")
    assert code == 0 and "text" in json.loads(out)["condition_kinds"]


@pytest.mark.parametrize("argv,needles", [
    (["--task", "no-such-task", "--model", "noise"], ["unknown task 'no-such-task'", "shapes-t2i"]),
    (["--task", "shapes-t2i", "--model", "no-such-model"], ["unknown model 'no-such-model'", "oracle"]),
    (["--task", "shapes-cc", "--model", "classonly", "--knob", "temperature=2"], ["no knob 'temperature'", "steps"]),
    (["--task", "shapes-cc", "--model", "classonly", "--guidance", "99"], ["guidance_scale=99.0 is out of range",
                                                                          "[0, 20]"]),
    (["--task", "shapes-cc", "--model", "classonly", "--knob", "steps=2.5"], ["steps='2.5' is not a valid int"]),
    (["--task", "shapes-cc", "--model", "classonly", "--knob", "steps"], ["is not NAME=VALUE"]),
    (["--task", "shapes-t2i", "--model", "classonly"], ["does not accept 'text' conditions", "accepts: class"]),
    (["--task", "shapes-cc", "--model", "classonly:official"], ["DiT-XL-2-256x256.pt",
                                                                "https://dl.fbaipublicfiles.com/DiT/models/",
                                                                "cgmbench weights fetch dit:xl-2-256"]),
    (["--task", "coco-t2i", "--model", "oracle", "--num-samples", "4"], ["coco2014/val2014", "val2014.zip",
                                                                         "inception-v3", "clip-vit-l-14",
                                                                         "cgmbench fetch --task coco-t2i"]),
    (["--task", "drawbench", "--model", "oracle", "--num-samples", "4"], ["no held-out real data"]),
    (["--task", "shapes-t2i", "--model", "noise", "--num-samples", "0"], ["--num-samples must be >= 1"]),
    (["--task", "shapes-t2i", "--model", "noise", "--batch-size", "0"], ["--batch-size must be >= 1"]),
    (["--task", "shapes-t2i", "--model", "oracle:v2"], ["has no checkpoints"]),
])
def test_bad_run_input(tmp_path, capsys, argv, needles):
    out_dir = tmp_path / "out"
    code, _, err = cli(capsys, "run", *argv, "--out", str(out_dir))
    assert_one_line_error(code, err, *needles)
    assert not (out_dir / "run.json").exists()


def test_corrupt_image_in_a_task_folder(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    save_png(np.zeros((3, 32, 32), np.uint8), folder / "a.png")
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    spec = tmp_path / "my-translation.toml"
    spec.write_text(f"""
name = "my-translation"
kind = "paired-translation"
resolution = 32
num_samples = 2
[conditions]
source = "image-folder"
path = "{folder}"
[reference]
source = "image-folder"
path = "{folder}"
[metrics]
compute = []
[data]
license = "test"
attribution = "test"
obtain = "made by the test"
""")
    code, _, err = cli(capsys, "run", "--task", str(spec), "--model", "noise", "--out", str(tmp_path / "r"))
    assert_one_line_error(code, err, "corrupt or unreadable image", "b.png")
    assert not (tmp_path / "r" / "run.json").exists()


def test_output_folder_rules(tmp_path, capsys):
    out = tmp_path / "r"
    args = ["run", "--task", "shapes-cc", "--model", "noise", "--num-samples", "8", "--out", str(out)]
    assert cli(capsys, *args)[0] == 0
    before = (out / "run.json").read_bytes()
    # the same run again without --resume: refused, record untouched
    code, _, err = cli(capsys, *args)
    assert_one_line_error(code, err, "already holds a complete run", "--resume")
    # a different run into the same folder, even with --resume: refused
    code, _, err = cli(capsys, "run", "--task", "shapes-cc", "--model", "noise", "--num-samples", "8",
                       "--seed", "1", "--out", str(out), "--resume")
    assert_one_line_error(code, err, "holds a different run", "seed")
    code, _, err = cli(capsys, "run", "--task", "shapes-cc", "--model", "oracle", "--num-samples", "8",
                       "--out", str(out), "--resume")
    assert_one_line_error(code, err, "holds a different run", "model")
    # --resume of the same complete run leaves the record as it is
    assert cli(capsys, *args, "--resume")[0] == 0
    assert (out / "run.json").read_bytes() == before
    # a folder with unrelated files is not used
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, _, err = cli(capsys, "run", "--task", "shapes-cc", "--model", "noise", "--out", str(other))
    assert_one_line_error(code, err, "not empty")


def test_run_options_are_not_prefixes_of_torchrun_options():
    from torch.distributed.run import get_args_parser

    torchrun = {opt for action in get_args_parser()._actions for opt in action.option_strings if opt.startswith("--")}
    run_parser = build_parser()._subparsers._group_actions[0].choices["run"]
    ours = {opt for action in run_parser._actions for opt in action.option_strings
            if opt.startswith("--") and opt != "--help"}
    assert ours, "no options found"
    clashes = {(o, t) for o in ours for t in torchrun if t.startswith(o) or o.startswith(t)}
    assert not clashes, clashes


def test_abbreviated_options_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--task", "shapes-t2i", "--model", "noise", "--num", "4"])


@pytest.mark.slow
def test_module_entry_point_runs(tmp_path):
    res = subprocess.run([sys.executable, "-m", "cgmbench", "run", "--task", "shapes-cc", "--model", "nope",
                          "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.startswith("cgmbench: error: unknown model 'nope'")
    assert "Traceback" not in res.stderr


# ----------------------------------------------------------------------------- task specs


def test_every_shipped_task_validates():
    names = list_tasks()
    assert {"shapes-cc", "shapes-t2i", "shapes-paired", "shapes-unpaired", "shapes-edit", "shapes-t2v",
            "digits-cc", "coco-t2i", "drawbench", "partiprompts", "geneval"} <= set(names)
    for name in names:
        task = load_task(name)
        assert task.name == name and task.data["license"] and len(task.sha256) == 64


GOOD_SPEC = """
name = "{name}"
kind = "text-to-image"
resolution = 32
num_samples = 4
[conditions]
source = "shapes"
[reference]
source = "shapes"
[metrics]
compute = ["judge"]
[data]
license = "CC0"
attribution = "test"
obtain = "nothing"
"""


@pytest.mark.parametrize("mutate,needle", [
    (lambda s: s.replace('kind = "text-to-image"', 'kind = "text-to-sound"'), "unknown kind 'text-to-sound'"),
    (lambda s: s.replace("resolution = 32", "resolution = \"32\""), "'resolution' must be int"),
    (lambda s: s.replace("num_samples = 4\n", ""), "missing required key 'num_samples'"),
    (lambda s: "colour = 1\n" + s, "unknown key(s) ['colour']"),
    (lambda s: s.replace('source = "shapes"\n[reference]', 'source = "flickr"\n[reference]'), "unknown source 'flickr'"),
    (lambda s: s.replace('compute = ["judge"]', 'compute = ["fld"]'), "unknown metric(s) ['fld']"),
    (lambda s: s.replace('license = "CC0"\n', ""), "missing required key 'license'"),
    (lambda s: s.replace("[metrics]", "[metrics"), "not valid TOML"),
    (lambda s: s.replace('name = "spec"', 'name = "other"'), "differs from the file name"),
    (lambda s: s + "\n[sweep]\nguidance_scale = []\n", "non-empty list"),
    (lambda s: "frames = 8\n" + s, "only for text-to-video"),
])
def test_spec_validation_errors(tmp_path, mutate, needle):
    from cgmbench.errors import CgmbenchError

    good = tmp_path / "spec.toml"
    good.write_text(GOOD_SPEC.format(name="spec"))
    assert load_task(str(good)).name == "spec"
    bad = tmp_path / "bad" / "spec.toml"
    bad.parent.mkdir()
    bad.write_text(mutate(GOOD_SPEC.format(name="spec")))
    with pytest.raises(CgmbenchError) as e:
        load_task(str(bad))
    assert needle in str(e.value)


def test_extra_task_folder_from_environment(tmp_path, monkeypatch):
    (tmp_path / "mine.toml").write_text(GOOD_SPEC.format(name="mine"))
    monkeypatch.setenv("CGMBENCH_TASKS", str(tmp_path))
    assert "mine" in list_tasks() and load_task("mine").kind == "text-to-image"
