"""Issue 12 part B, items 11-12: a junk, truncated or half-downloaded checkpoint (or a malformed DiT companion JSON)
ends in one line naming the file, what is wrong and how to get it again."""

from __future__ import annotations

import shutil

import pytest
import torch

from cgmbench import weights
from cgmbench.cli.main import main
from cgmbench.errors import IntegrityError
from cgmbench.generator import Generator
from cgmbench.models.registry import load_model, register_model
from cgmbench.spec.task import load_task

SHIPPED = weights.shipped_dir()


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = [ln for ln in err.splitlines() if ln.startswith("cgmbench: error: ")]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("model", ["ldm", "sd3"])
@pytest.mark.parametrize("damage", ["truncated", "junk-ckpt", "empty"])
def test_damaged_checkpoint_files_are_one_line_naming_the_file(tmp_path, capsys, model, damage):
    good = (SHIPPED / f"{model}-shapes-t2i-tiny.safetensors").read_bytes()
    if damage == "truncated":  # a partial download: the header promises more than the file holds
        path = tmp_path / "partial.safetensors"
        path.write_bytes(good[: len(good) // 3])
    elif damage == "junk-ckpt":
        path = tmp_path / "junk.ckpt"
        path.write_bytes(bytes(range(256)) * 4)
    else:
        path = tmp_path / "empty.safetensors"
        path.write_bytes(b"")
    rc = main(["run", "--task", "shapes-t2i", "--model", model, "--checkpoint", str(path), "--num-samples", "2",
               "--out", str(tmp_path / "r"), "--device", "cpu"])
    err = _one_line(capsys)
    assert rc == 2 and path.name in err, err
    assert "weights_only` set to `False`" not in err  # never advise unpickling an untrusted file
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("companion, words", [
    ('{"dit": [', "JSONDecodeError"),
    ('{"dit": {"depth": "x"}}', "mydit.json"),
    ('[1]', "mydit.json"),
])
def test_malformed_dit_companion_json_is_one_line(tmp_path, capsys, companion, words):
    shutil.copy(SHIPPED / "dit-shapes-cc-tiny.safetensors", tmp_path / "mydit.safetensors")
    (tmp_path / "mydit.json").write_text(companion)
    rc = main(["run", "--task", "shapes-cc", "--model", "dit", "--checkpoint", str(tmp_path / "mydit.safetensors"),
               "--num-samples", "2", "--out", str(tmp_path / "r"), "--device", "cpu"])
    err = _one_line(capsys)
    assert rc == 2 and words in err, err


class ReadsAKnownFile(Generator):
    """Loads a registered weights file the way the families do (weights.resolve) and parses it with safetensors."""

    name = "reads-known"
    condition_kinds = frozenset({"class"})

    @classmethod
    def load(cls, task, variant=None, checkpoint=None, device="cpu"):
        from safetensors.torch import load_file

        path, _ = weights.resolve("faults-test:vae")
        load_file(str(path))
        return cls((task.resolution, task.resolution))

    def generate(self, conditions, seeds):
        return torch.zeros(len(seeds), 3, *self.resolution, dtype=torch.uint8)


def test_a_junk_file_in_the_weights_folder_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("CGMBENCH_HOME", str(tmp_path))
    # the test's registry entry leaves with the test (monkeypatch.setitem deletes it at teardown)
    monkeypatch.setitem(weights._REGISTRY, "faults-test:vae", weights.KnownFile(
        name="faults-test:vae", filename="faults-vae.safetensors", url="https://example.invalid/vae.safetensors",
        digest_source="none published: a test file"))
    register_model("reads-known", ReadsAKnownFile)
    (weights.weights_dir()).mkdir(parents=True, exist_ok=True)
    junk = weights.weights_dir() / "faults-vae.safetensors"
    junk.write_bytes(b"\x00\x01")  # what an interrupted manual download leaves
    with pytest.raises(IntegrityError) as e:
        load_model("reads-known", load_task("shapes-cc"))
    text = str(e.value)
    assert str(junk) in text and "header too small" in text and "cgmbench weights fetch faults-test:vae" in text
