"""Samples at the model's own resolution, scored at the task's: the named resize protocols.

A generator samples at its native resolution (SD3-medium 1024², a tiny model 32², ...); the sample store keeps
those native samples, losslessly. The task's ``resolution`` is the *evaluation* resolution: before any metric
sees a sample, :func:`for_scoring` (called once, at the top of
:func:`cgmbench.scoring.harness.compute_metrics`) wraps the store in a view whose batches are resized with the
run's recorded protocol. This is how suites compare models of different native sizes (HEIM; the COCO-FID
protocols of LDM, Imagen and Parti resize the samples to 256² before FID).

=========  =========================================================================================
protocol   what it does to a uint8 ``[3, H, W]`` sample (videos: every frame alike)
=========  =========================================================================================
clean      PIL bicubic resize of the uint8 RGB image to the task's side (PIL's bicubic filter widens
           with the scale factor, i.e. it is antialiased when downsampling), uint8 out — the resize
           clean-fid applies to generated images and the one cgmbench applies to reference images
           (:func:`cgmbench.images.center_crop_resize`)
nearest    PIL nearest-neighbour (exact pixel replication / decimation; for tests and pixel art)
=========  =========================================================================================

Downsampling is the intended use; upsampling a smaller model to a larger task is allowed and recorded
(``run.json`` ``samples.resize_direction`` = ``"up"``). Tasks scored pixel-wise against a true target (paired
translation, editing, inpainting: PSNR/SSIM/LPIPS, and the cycle error of unpaired translation) need the exact
size and refuse a model of another resolution (:func:`check_model_resolution`).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from cgmbench.errors import CgmbenchError

#: protocol name -> PIL filter
PROTOCOLS = {"clean": Image.BICUBIC, "nearest": Image.NEAREST}
DEFAULT_PROTOCOL = "clean"
DESCRIPTIONS = {
    "clean": "PIL bicubic (antialiased when downsampling) resize of the uint8 RGB sample to the task resolution, "
             "uint8 out (clean-fid's generated-image resize)",
    "nearest": "PIL nearest-neighbour resize of the uint8 RGB sample to the task resolution",
}
#: task kinds whose samples are compared pixel by pixel with a target or a source image
EXACT_SIZE_KINDS = ("paired-translation", "editing", "inpainting", "unpaired-translation")
#: metrics that compare samples pixel by pixel with a target or a source image
PIXELWISE_METRICS = ("psnr", "ssim", "lpips", "fcn_score", "cycle_error")


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise CgmbenchError(f"unknown resize protocol {protocol!r}", f"known: {', '.join(PROTOCOLS)}")
    return protocol


def resize_samples(samples: np.ndarray, side: int, protocol: str = DEFAULT_PROTOCOL) -> np.ndarray:
    """uint8 ``[B, 3, H, W]`` (or video ``[B, T, 3, H, W]``) -> uint8 ``[..., 3, side, side]`` by ``protocol``."""
    check_protocol(protocol)
    if samples.dtype != np.uint8 or samples.ndim not in (4, 5) or samples.shape[-3] != 3:
        raise CgmbenchError(f"resize expects uint8 [B, 3, H, W] or [B, T, 3, H, W] samples, "
                            f"got {samples.dtype} {tuple(samples.shape)}")
    if not isinstance(side, int) or side < 1:
        raise CgmbenchError(f"resize target side must be a positive integer, got {side!r}")
    if samples.shape[-2:] == (side, side):
        return samples
    flat = samples.reshape(-1, *samples.shape[-3:])
    out = np.empty((len(flat), 3, side, side), np.uint8)
    for i, image in enumerate(flat):
        pil = Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)), "RGB")
        out[i] = np.asarray(pil.resize((side, side), PROTOCOLS[protocol]), np.uint8).transpose(2, 0, 1)
    return out.reshape(*samples.shape[:-2], side, side)


def plan(native: tuple[int, int], task, protocol: str = DEFAULT_PROTOCOL) -> dict:
    """What a run records in ``run.json`` ``samples``: both resolutions and the resize between them."""
    eval_res = [task.resolution, task.resolution]
    same = list(native) == eval_res
    return {"native_resolution": list(native), "eval_resolution": eval_res,
            "resize": "none" if same else check_protocol(protocol),
            "resize_direction": "none" if same else ("down" if native[0] > task.resolution else "up")}


def check_model_resolution(native: tuple[int, int], task, what: str) -> None:
    """Refuse what cannot be resized fairly: another aspect ratio, or a task scored pixel-wise."""
    h, w = native
    side = task.resolution
    if (h, w) == (side, side):
        return
    if h != w:
        raise CgmbenchError(f"{what} makes {h}x{w} images, task {task.name} is square ({side}x{side}): "
                            "the aspect ratio differs", "choose a checkpoint with square outputs")
    pixelwise = [m for m in task.metric_settings.compute if m in PIXELWISE_METRICS]
    if task.kind in EXACT_SIZE_KINDS or pixelwise:
        why = f"its metrics {', '.join(pixelwise)} compare" if pixelwise else f"a {task.kind} task compares"
        raise CgmbenchError(f"{what} makes {h}x{w} images, task {task.name} needs exactly {side}x{side}: {why} "
                            "samples pixel by pixel with their targets, so samples are not resized",
                            "choose a checkpoint trained at the task's resolution")


class ResizedStore:
    """A read-only view of a :class:`~cgmbench.run.samples.SampleStore` whose batches come resized."""

    def __init__(self, store, side: int, protocol: str):
        self.store, self.side, self.protocol = store, side, check_protocol(protocol)

    def __getattr__(self, name):  # config, index, root, covered, missing, digest: the native store's
        return getattr(self.store, name)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (*self.store.sample_shape[:-2], self.side, self.side)

    def iter_batches(self, n: int | None = None):
        for start, arr in self.store.iter_batches(n):
            yield start, resize_samples(arr, self.side, self.protocol)

    def read(self, start: int, stop: int) -> np.ndarray:
        return resize_samples(self.store.read(start, stop), self.side, self.protocol)


def for_scoring(store, task):
    """The store as the metrics must see it: at the task's resolution, resized by the run's recorded protocol.

    A store already at the task's resolution is returned unchanged. A store of another size must name its
    protocol in its index configuration (``config["resize"]``, written by ``cgmbench run``)."""
    shape = tuple(store.sample_shape)
    if shape[-2:] == (task.resolution, task.resolution):
        return store
    protocol = store.config.get("resize") if isinstance(store.config, dict) else None
    if not protocol or protocol == "none":
        raise CgmbenchError(f"samples are {shape[-2]}x{shape[-1]} but task {task.name} is scored at "
                            f"{task.resolution}x{task.resolution}, and the sample index names no resize protocol",
                            f"record one of {', '.join(PROTOCOLS)} as 'resize' in samples/index.json config")
    return ResizedStore(store, task.resolution, protocol)
