"""Reading untrusted image files, safely.

Every image cgmbench reads from disk (datasets, submissions, user folders) goes through
:func:`read_image`: a size limit against decompression bombs, a clear error naming the file
for anything PIL cannot decode, and one output convention: uint8 ``[3, H, W]`` RGB.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from cgmbench.errors import CgmbenchError

#: Largest image accepted (pixels). 64 megapixels covers every benchmark image by far.
MAX_PIXELS = 64 * 1024 * 1024
#: Largest image file accepted (bytes).
MAX_FILE_BYTES = 256 * 1024 * 1024
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` to uint8 ``[3, H, W]`` RGB; corrupt or oversized files raise :class:`CgmbenchError`.

    Only a regular file is opened (a FIFO or device is refused at once: :mod:`cgmbench.safe_paths`).
    High bit depths are scaled, never clipped (:func:`to_uint8_rgb`): 16-bit images keep their high byte
    (``v >> 8``, what PIL does for 16-bit RGB PNGs), float images must lie in [0, 1] (``round(255 v)``);
    anything else (32-bit integer, floats outside [0, 1]) is refused with a message."""
    from cgmbench.safe_paths import open_file

    path = Path(path)
    f = open_file(path, "image", max_bytes=MAX_FILE_BYTES)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise CgmbenchError(f"image {path} is {w}x{h} pixels, over the {max_pixels}-pixel limit")
                im.load()
                return to_uint8_rgb(im, path)
    except CgmbenchError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise CgmbenchError(f"image {path} is too large to decode safely (decompression bomb guard)") from None
    except Exception as e:  # PIL raises many types for corrupt data
        raise CgmbenchError(f"corrupt or unreadable image {path}: {type(e).__name__}: {e}",
                            "replace or delete the file") from None
    finally:
        f.close()


#: PIL modes holding more than 8 bits per sample.
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def to_uint8_rgb(im: Image.Image, path: str | Path = "<image>") -> np.ndarray:
    """uint8 ``[3, H, W]`` RGB of a decoded PIL image, scaling high bit depths (see :func:`read_image`)."""
    mode = im.mode
    if mode in _SIXTEEN_BIT or (mode == "I" and im.format == "PNG"):  # PNG stores at most 16 bits per sample
        arr = np.asarray(im).astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):  # pragma: no cover - PIL keeps 16-bit data in range
            raise CgmbenchError(f"image {path}: 16-bit samples outside 0..65535")
        gray = (arr >> 8).astype(np.uint8)
        return np.repeat(gray[None], 3, axis=0)
    if mode == "I":
        raise CgmbenchError(f"image {path} has 32-bit integer samples (PIL mode I); its scale is ambiguous",
                            "save it as an 8- or 16-bit PNG")
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        if arr.size and (not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0):
            lo, hi = (float(np.nanmin(arr)), float(np.nanmax(arr))) if arr.size else (0.0, 0.0)
            raise CgmbenchError(f"image {path} has float samples in [{lo:g}, {hi:g}] (or non-finite ones); only "
                                "float images in [0, 1] are read", "save it as an 8- or 16-bit PNG")
        gray = np.rint(arr * 255.0).astype(np.uint8)
        return np.repeat(gray[None], 3, axis=0)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1).copy()


def center_crop_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square, then resize to ``size`` with PIL bicubic (LDM/ADM data convention)."""
    _, h, w = image.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = image[:, top:top + s, left:left + s]
    if s == size:
        return np.ascontiguousarray(crop)
    im = Image.fromarray(crop.transpose(1, 2, 0)).resize((size, size), Image.BICUBIC)
    return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; an image name that is a FIFO, socket or device is
    refused (never skipped silently, never opened)."""
    from cgmbench.safe_paths import is_regular_or_folder

    out = []
    for p in Path(folder).iterdir():
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if not is_regular_or_folder(p):
            raise CgmbenchError(f"{p} is not a regular file (a FIFO, socket, device or broken link); "
                                "only regular image files are read", "remove it from the folder")
        if p.is_file():
            out.append(p)
    return sorted(out)


def save_png(image: np.ndarray, path: str | Path) -> None:
    Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(path)
