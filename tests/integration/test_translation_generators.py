"""pix2pix / CycleGAN as cgmbench generators, their training recipes, and the official dataset loaders."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import cgmbench.sources.base
from baselines.translation.generator import CycleGANGenerator, Pix2PixGenerator
from baselines.translation.networks import (
    ResnetGenerator,
    UnetGenerator,
    build_generator,
    get_norm_layer,
    init_weights,
    set_test_mode,
)
from baselines.translation.train import CYCLEGAN_CONFIGS, PIX2PIX_CONFIGS, CycleGANTrainer, Pix2PixTrainer
from cgmbench.conditions import Conditions
from cgmbench.errors import CgmbenchError
from cgmbench.generator import to_uint8
from cgmbench.spec.task import load_task, validate_task_dict

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TASK_DIR = REPO / "tasks"
NEW_SOURCES = {
    "pix2pix-ab": "cgmbench.sources.translation:PairedABSource",
    "cyclegan-unpaired": "cgmbench.sources.translation:UnpairedSource",
}
#: judge floor of the shipped tiny CycleGAN at N=64 (measured value in its weights JSON)
CYCLEGAN_FLOOR = 0.05
REAL_TASKS = ["facades", "maps", "edges2shoes", "cityscapes", "horse2zebra", "monet2photo"]


@pytest.fixture
def sources(monkeypatch):
    """The two translation sources, registered as the lead registers them in cgmbench.sources.base."""
    monkeypatch.setattr(cgmbench.sources.base, "SOURCES", {**cgmbench.sources.base.SOURCES, **NEW_SOURCES})


def make_task(kind: str, resolution: int, conditions: dict, reference: dict | None = None, name="t"):
    return validate_task_dict({
        "name": name, "kind": kind, "resolution": resolution, "num_samples": 4,
        "conditions": conditions, "reference": reference or conditions,
        "metrics": {"compute": ["fid"]}, "data": {"license": "x", "attribution": "x", "obtain": "x"},
    })


def write_image(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.transpose(1, 2, 0)).save(path)


def ab_image(seed: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (3, h, w), dtype=np.uint8)
    b = rng.integers(0, 256, (3, h, w), dtype=np.uint8)
    return np.concatenate([a, b], axis=2), a, b


# ------------------------------------------------------------------------------------------
# Dataset loaders (layouts of the official archives, built in tmp_path)
# ------------------------------------------------------------------------------------------


def test_paired_ab_source_halves_direction_and_splits(sources, tmp_path):
    root = tmp_path / "facades"
    truth = {}
    for split in ("train", "test"):
        for i in range(3):
            ab, a, b = ab_image(10 * i + (split == "train"), 16, 16)
            write_image(root / split / f"{i + 1}.png", ab)
            truth[split, i] = (a, b)
    params = {"source": "pix2pix-ab", "path": str(root), "phase": "test", "direction": "BtoA", "url": "U"}
    task = make_task("paired-translation", 16, params)
    src = cgmbench.sources.base.open_source(task, "conditions")
    assert len(src) == 3
    cond = src.conditions([0, 1, 2, 3])  # index 3 wraps to 0
    assert cond.images.dtype == torch.uint8 and tuple(cond.images.shape) == (4, 3, 16, 16)
    for k, i in enumerate([0, 1, 2, 0]):
        a, b = truth["test", i]
        assert np.array_equal(cond.images[k].numpy(), b)  # BtoA: the condition is the right half
        assert np.array_equal(src.references([k])[0], a)
    assert np.array_equal(src.oracle([1], [0])[0], truth["test", 1][0])

    forward = cgmbench.sources.base.open_source(make_task("paired-translation", 16, {**params, "direction": "AtoB"}))
    assert np.array_equal(forward.conditions([2]).images[0].numpy(), truth["test", 2][0])
    train = cgmbench.sources.base.open_source(task, "conditions", split="train")
    assert np.array_equal(train.references([1])[0], truth["train", 1][0])


def test_paired_ab_source_resizes_each_half_bicubic(sources, tmp_path):
    ab, a, b = ab_image(7, 20, 20)
    write_image(tmp_path / "maps" / "val" / "1.jpg", ab)  # the official archives hold .jpg files
    task = make_task("paired-translation", 16, {"source": "pix2pix-ab", "path": str(tmp_path / "maps"),
                                                "phase": "val", "direction": "AtoB"})
    src = cgmbench.sources.base.open_source(task)
    decoded = np.asarray(Image.open(tmp_path / "maps" / "val" / "1.jpg").convert("RGB")).transpose(2, 0, 1)
    left = Image.fromarray(decoded[:, :, :20].transpose(1, 2, 0)).resize((16, 16), Image.BICUBIC)
    assert np.array_equal(src.conditions([0]).images[0].numpy(), np.asarray(left).transpose(2, 0, 1))


def test_corrupt_image_is_a_clear_error(sources, tmp_path):
    ab, _, _ = ab_image(1, 16, 16)
    write_image(tmp_path / "facades" / "test" / "1.png", ab)
    (tmp_path / "facades" / "test" / "2.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    task = make_task("paired-translation", 16, {"source": "pix2pix-ab", "path": str(tmp_path / "facades")})
    src = cgmbench.sources.base.open_source(task)
    src.conditions([0])
    with pytest.raises(CgmbenchError, match=r"corrupt or unreadable image .*facades/test/2\.jpg"):
        src.conditions([1])


def test_missing_folders_name_url_and_exact_path(sources, tmp_path, monkeypatch):
    monkeypatch.setenv("CGMBENCH_DATA", str(tmp_path / "data"))
    task = load_task(str(TASK_DIR / "facades.toml"))
    src = cgmbench.sources.base.open_source(task)
    with pytest.raises(CgmbenchError) as err:
        len(src)
    msg = str(err.value)
    assert f"dataset folder {tmp_path}/data/pix2pix/facades/test for task facades does not exist" in msg
    assert "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/facades.tar.gz" in msg

    h2z = load_task(str(TASK_DIR / "horse2zebra.toml"))
    (tmp_path / "data" / "cyclegan" / "horse2zebra" / "testA").mkdir(parents=True)
    with pytest.raises(CgmbenchError, match=r"horse2zebra/testA for task horse2zebra holds no images"):
        cgmbench.sources.base.open_source(h2z).conditions([0])
    with pytest.raises(CgmbenchError, match=r"horse2zebra/testB for task horse2zebra does not exist.*"
                                            r"cyclegan/datasets/horse2zebra\.zip"):
        cgmbench.sources.base.open_source(h2z, "reference").references([0])


def test_unpaired_source_reads_testA_for_conditions_and_testB_for_references(sources, tmp_path, monkeypatch):
    monkeypatch.setenv("CGMBENCH_DATA", str(tmp_path))
    root = tmp_path / "cyclegan" / "horse2zebra"
    rng = np.random.default_rng(0)
    imgs = {}
    for folder, n in (("testA", 2), ("testB", 3), ("trainA", 1), ("trainB", 1)):
        for i in range(n):
            imgs[folder, i] = rng.integers(0, 256, (3, 256, 256), dtype=np.uint8)
            write_image(root / folder / f"n{i:04d}.png", imgs[folder, i])
    task = load_task(str(TASK_DIR / "horse2zebra.toml"))
    cond = cgmbench.sources.base.open_source(task, "conditions")
    ref = cgmbench.sources.base.open_source(task, "reference")
    assert (len(cond), len(ref)) == (2, 3)
    assert np.array_equal(cond.conditions([1]).images[0].numpy(), imgs["testA", 1])
    assert np.array_equal(ref.references([2])[0], imgs["testB", 2])
    assert np.array_equal(cgmbench.sources.base.open_source(task, "reference", "train").references([0])[0],
                          imgs["trainB", 0])
    with pytest.raises(CgmbenchError, match="no held-out real data"):
        cond.oracle([0], [0])


@pytest.mark.parametrize("name", REAL_TASKS)
def test_real_task_specs_are_valid(sources, name):
    task = load_task(str(TASK_DIR / f"{name}.toml"))
    assert task.resolution == 256 and task.metrics["extractor"] == "inception-v3"
    assert task.metrics["protocol"] == "clean" and {"fid", "kid"} <= set(task.metrics["compute"])
    assert ("fcn_score" in task.metrics["compute"]) == (name == "cityscapes")
    assert task.conditions["path"].startswith("${CGMBENCH_DATA}/")
    model = "pix2pix" if task.kind == "paired-translation" and "pix2pix" in task.checkpoints else "cyclegan"
    cls = Pix2PixGenerator if model == "pix2pix" else CycleGANGenerator
    assert task.checkpoints[model] in cls.official_variants


# ------------------------------------------------------------------------------------------
# Generators with tiny random networks
# ------------------------------------------------------------------------------------------


def random_unet(seed=0) -> UnetGenerator:
    """6-level U-Net at 64x64 with BatchNorm and dropout in one level, random weights and statistics."""
    torch.manual_seed(seed)
    net = init_weights(UnetGenerator(3, 3, 6, ngf=4, norm_layer=get_norm_layer("batch"), use_dropout=True), "normal", 0.3)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return net


def image_conditions(n: int, res: int, seed: int = 0, channels: int = 3) -> Conditions:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, res, res), generator=g, dtype=torch.uint8)
    return Conditions(kind="image", indices=list(range(n)), images=images)


def subset(c: Conditions, rows: list[int]) -> Conditions:
    return Conditions(kind="image", indices=[c.indices[r] for r in rows], images=c.images[rows])


@pytest.fixture
def pix2pix_model() -> Pix2PixGenerator:
    return Pix2PixGenerator(random_unet(), (64, 64), arch={"netG": "unet", "num_downs": 6})


def test_eval_mode_matches_network_and_is_batch_independent(pix2pix_model):
    c = image_conditions(5, 64)
    out = pix2pix_model.generate(c, [11, 12, 13, 14, 15])
    assert out.dtype == torch.uint8 and tuple(out.shape) == (5, 3, 64, 64)
    with torch.no_grad():
        expected = to_uint8(pix2pix_model.net.eval()(c.images.float() / 127.5 - 1))
    assert torch.equal(out, expected)
    assert torch.equal(out, pix2pix_model.generate(c, [1, 2, 3, 4, 5]))  # seeds do not matter in eval
    singles = torch.cat([pix2pix_model.generate(subset(c, [i]), [11 + i]) for i in range(5)])
    assert torch.equal(out, singles)
    assert len(torch.unique(out)) > 50  # not a constant image


def test_official_default_is_per_sample_seeded_and_batch_independent(pix2pix_model):
    c = image_conditions(4, 64, seed=1)
    seeds = [101, 102, 103, 104]
    before = {k: v.clone() for k, v in pix2pix_model.net.state_dict().items()}
    a = pix2pix_model.generate(c, seeds, test_mode="official-default")
    assert torch.equal(a, pix2pix_model.generate(c, seeds, test_mode="official-default"))
    rev = pix2pix_model.generate(subset(c, [3, 2, 1, 0]), seeds[::-1], test_mode="official-default")
    assert torch.equal(rev.flip(0), a)
    assert torch.equal(pix2pix_model.generate(subset(c, [2]), [103], test_mode="official-default")[0], a[2])
    other = pix2pix_model.generate(c, [201, 202, 203, 204], test_mode="official-default")
    assert (a.int() - other.int()).abs().max() > 10  # dropout noise follows the seed
    nodrop = pix2pix_model.generate(c, seeds, test_mode="batchstats-no-dropout")
    assert torch.equal(nodrop, pix2pix_model.generate(c, [7, 8, 9, 10], test_mode="batchstats-no-dropout"))
    assert (a.int() - nodrop.int()).abs().max() > 10
    assert (nodrop.int() - pix2pix_model.generate(c, seeds).int()).abs().max() > 10  # batch stats != running
    # no side effects: running statistics untouched, the network left in eval mode
    assert all(torch.equal(before[k], v) for k, v in pix2pix_model.net.state_dict().items())
    assert not any(m.training for m in pix2pix_model.net.modules())


def test_batchstats_mode_uses_single_sample_statistics(pix2pix_model):
    """Upstream test.py runs batch size 1: the batch statistics are those of the sample alone."""
    c = image_conditions(3, 64, seed=2)
    out = pix2pix_model.generate(c, [0, 1, 2], test_mode="batchstats-no-dropout")
    net = set_test_mode(copy.deepcopy(pix2pix_model.net), "batchstats-no-dropout")
    with torch.no_grad():
        alone = to_uint8(net(c.images[1:2].float() / 127.5 - 1))[0]
        pair = to_uint8(net(c.images[1:3].float() / 127.5 - 1))[0]
    assert torch.equal(out[1], alone)
    assert (out[1].int() - pair.int()).abs().max() > 10  # a batch of two would have given another image


def test_cyclegan_modes_agree():
    torch.manual_seed(0)
    net = init_weights(ResnetGenerator(3, 3, 4, get_norm_layer("instance"), n_blocks=2), "normal", 0.3)
    model = CycleGANGenerator(net, (32, 32), arch={"netG": "resnet", "n_blocks": 2})
    c = image_conditions(3, 32)
    ref = model.generate(c, [1, 2, 3])
    assert tuple(ref.shape) == (3, 3, 32, 32) and ref.dtype == torch.uint8
    for mode in ("official-default", "batchstats-no-dropout"):
        assert torch.equal(model.generate(c, [4, 5, 6], test_mode=mode), ref)
    assert "no guidance" in model.description


def test_wrong_source_size_or_channels_are_errors(pix2pix_model):
    with pytest.raises(CgmbenchError, match="source images are 32x32, but this .* works at 64x64"):
        pix2pix_model.generate(image_conditions(2, 32), [0, 1])
    with pytest.raises(CgmbenchError, match=r"RGB source images uint8 \[B, 3, H, W\], got \(2, 1, 64, 64\)"):
        pix2pix_model.generate(image_conditions(2, 64, channels=1), [0, 1])
    with pytest.raises(CgmbenchError, match="no source images"):
        pix2pix_model.generate(Conditions(kind="image", indices=[0]), [0])
    with pytest.raises(CgmbenchError, match="not one of"):
        pix2pix_model.resolve_knobs({"test_mode": "train"})
    with pytest.raises(CgmbenchError, match="has no knob 'guidance_scale'"):
        pix2pix_model.resolve_knobs({"guidance_scale": 2.0})
    assert pix2pix_model.resolve_knobs({}) == {"test_mode": "eval"}


# ------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------


def task256(kind="unpaired-translation"):
    return make_task(kind, 256, {"source": "shapes"})


def test_official_variant_missing_names_url_sha_and_path(tmp_path):
    with pytest.raises(CgmbenchError) as err:
        CycleGANGenerator.load(task256(), variant="horse2zebra")
    msg = str(err.value)
    assert "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/horse2zebra.pth" in msg
    assert "weights/cyclegan_horse2zebra.pth" in msg
    with pytest.raises(CgmbenchError, match="unknown pix2pix checkpoint 'nope'.*facades_label2photo"):
        Pix2PixGenerator.load(task256("paired-translation"), variant="nope")
    with pytest.raises(CgmbenchError, match="names no default cyclegan checkpoint"):
        CycleGANGenerator.load(task256(), variant=None)


def test_official_cyclegan_state_dict_loads_from_pth(tmp_path):
    net = build_generator(CycleGANGenerator.official_arch)
    path = tmp_path / "latest_net_G.pth"
    torch.save(net.state_dict(), path)
    model = CycleGANGenerator.load(task256(), checkpoint=str(path))
    assert model.checkpoint.extra["architecture"]["netG"] == "resnet_9blocks"
    assert model.checkpoint.sha256 and model.checkpoint.path == str(path)
    with pytest.raises(CgmbenchError, match="divisible by 4"):
        CycleGANGenerator.load(make_task("unpaired-translation", 30, {"source": "shapes"}), checkpoint=str(path))


def test_checkpoint_of_the_wrong_generator_names_keys(tmp_path):
    unet = UnetGenerator(3, 3, 5, ngf=4, norm_layer=get_norm_layer("batch"))
    path = tmp_path / "pix2pix_G.pth"
    torch.save(unet.state_dict(), path)
    with pytest.raises(CgmbenchError, match=r"not a cyclegan generator checkpoint \(resnet_9blocks.*"
                                            r"missing keys, first: \['model\.1\.weight'.*"
                                            r"unexpected keys, first: \['model\.model\.0\.weight'"):
        CycleGANGenerator.load(task256(), checkpoint=str(path))

    resnet = ResnetGenerator(3, 3, 4, get_norm_layer("instance"), n_blocks=1)
    st = tmp_path / "resnet.safetensors"
    save_file(resnet.state_dict(), str(st), metadata={
        "cgmbench.architecture": json.dumps({"netG": "unet", "num_downs": 5, "ngf": 4, "norm": "batch"})})
    with pytest.raises(CgmbenchError, match=r"not a pix2pix generator checkpoint \(unet.*missing keys"):
        Pix2PixGenerator.load(make_task("paired-translation", 32, {"source": "shapes"}), checkpoint=str(st))


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_unsafe_pickle_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    torch.save({"model.1.weight": torch.zeros(1), "x": _Payload(str(marker))}, path)
    with pytest.raises(CgmbenchError, match="unsafe unpickling"):
        CycleGANGenerator.load(task256(), checkpoint=str(path))
    assert not marker.exists()


# ------------------------------------------------------------------------------------------
# Training recipes: checkpoints, loss log, exact resume
# ------------------------------------------------------------------------------------------

MICRO = {"num_train": 8, "batch_size": 2, "steps": 4, "save_every": 2, "log_every": 1}


class _Stop(Exception):
    pass


@pytest.mark.parametrize("cls,configs,task_name", [
    (Pix2PixGenerator, PIX2PIX_CONFIGS, "shapes-paired"),
    (CycleGANGenerator, CYCLEGAN_CONFIGS, "shapes-unpaired"),
])
def test_training_writes_checkpoints_and_resumes_exactly(tmp_path, monkeypatch, cls, configs, task_name):
    torch.set_num_threads(1)
    micro = {**configs["tiny"], **MICRO, "generator": {**configs["tiny"]["generator"], "ngf": 4}, "ndf": 4}
    monkeypatch.setitem(configs, "micro", micro)
    task = load_task(task_name)
    full = cls.train(task, config="micro", out=tmp_path / "full", log=lambda m: None)

    trainer = CycleGANTrainer if cls is CycleGANGenerator else Pix2PixTrainer
    step_fn = trainer.train_step

    def crash_in_step_3(self, step):  # a crash (not Ctrl-C): what the last periodic checkpoint kept survives
        if step == 2:
            raise _Stop
        return step_fn(self, step)

    with monkeypatch.context() as m, pytest.raises(_Stop):
        m.setattr(trainer, "train_step", crash_in_step_3)
        cls.train(task, config="micro", out=tmp_path / "cut", log=lambda m: None)
    assert json.loads((tmp_path / "cut" / "checkpoints" / "latest.json").read_text())["step"] == 2
    with pytest.raises(CgmbenchError, match="already holds a training run"):
        cls.train(task, config="micro", out=tmp_path / "cut", log=lambda m: None)
    resumed = cls.train(task, config="micro", out=tmp_path / "cut", resume=True, log=lambda m: None)

    a, b = load_file(str(full)), load_file(str(resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with safe_open(str(full), "pt") as f, safe_open(str(resumed), "pt") as g:
        assert f.metadata() == g.metadata()
    def log_rows(folder):  # loss.csv without the wall-clock column
        return [line.rsplit(",", 1)[0] for line in (folder / "loss.csv").read_text().splitlines()]

    log_full = log_rows(tmp_path / "full")
    assert log_full == log_rows(tmp_path / "cut")
    assert log_full[0].startswith("stage,step,") and [r.split(",")[1] for r in log_full[1:]] == ["1", "2", "3", "4"]
    summary = json.loads((tmp_path / "full" / "train_summary.json").read_text())
    assert summary["steps"] == 4 and summary["final_losses"]["step"] == 4
    assert len(list((tmp_path / "full" / "checkpoints").glob("step_*.safetensors"))) == 2
    model = cls.load(task, checkpoint=str(full))
    assert model.generate(load_source_conditions(task, 2), [0, 1]).shape == (2, 3, 32, 32)
    with pytest.raises(CgmbenchError, match="no training recipe 'big'"):
        cls.train(task, config="big", out=tmp_path / "x")


def load_source_conditions(task, n):
    return cgmbench.sources.base.open_source(task).conditions(list(range(n)))


# ------------------------------------------------------------------------------------------
# The shipped tiny checkpoints, end to end through the CLI
# ------------------------------------------------------------------------------------------


def judge_only_spec(tmp_path: Path, task_name: str, model: str, variant: str) -> Path:
    """The shipped task spec with only the judge computed and the tiny checkpoint as the default."""
    text = (TASK_DIR / f"{task_name}.toml").read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("compute")]
    at = lines.index("[metrics]") + 1
    lines.insert(at, 'compute = ["judge"]')
    if "[checkpoints]" not in text:
        lines += ["", "[checkpoints]"]
    if f'{model} = "{variant}"' not in lines:
        lines.insert(lines.index("[checkpoints]") + 1, f'{model} = "{variant}"')
    path = tmp_path / "specs" / f"{task_name}.toml"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("model,variant,task_name,floor", [
    ("pix2pix", "shapes-paired-tiny", "shapes-paired", 0.1),
    ("cyclegan", "shapes-unpaired-tiny", "shapes-unpaired", CYCLEGAN_FLOOR),
])
def test_shipped_tiny_checkpoint_beats_noise_through_the_cli(tmp_path, model, variant, task_name, floor):
    from cgmbench.cli.main import main

    spec = judge_only_spec(tmp_path, task_name, model, variant)
    records = {}
    for name in (model, "noise"):
        out = tmp_path / name
        assert main(["run", "--task", str(spec), "--model", name, "--num-samples", "64", "--out", str(out)]) == 0
        records[name] = json.loads((out / "run.json").read_text())
    ours, noise = (records[k]["metrics"]["judge"]["overall"]["value"] for k in (model, "noise"))
    assert noise == 0.0
    assert ours >= floor
    assert records[model]["model"]["knobs"] == {"test_mode": "eval"}
    ckpt = records[model]["model"]["checkpoint"]
    assert ckpt["name"] == variant and ckpt["source"] == "shipped" and len(ckpt["sha256"]) == 64
    cls = Pix2PixGenerator if model == "pix2pix" else CycleGANGenerator
    with pytest.raises(CgmbenchError, match="trained at 32x32"):
        cls.load(make_task(load_task(task_name).kind, 64, {"source": "shapes"}), variant=variant)
