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
    """Decode ``path`` to uint8 ``[3, H, W]`` RGB; corrupt or oversized files raise :class:`CgmbenchError`."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise CgmbenchError(f"cannot read image {path}: {e.strerror}") from None
    if size > MAX_FILE_BYTES:
        raise CgmbenchError(f"image {path} is {size} bytes, over the {MAX_FILE_BYTES}-byte limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise CgmbenchError(f"image {path} is {w}x{h} pixels, over the {max_pixels}-pixel limit")
                im.load()
                rgb = im.convert("RGB")
    except CgmbenchError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise CgmbenchError(f"image {path} is too large to decode safely (decompression bomb guard)") from None
    except Exception as e:  # PIL raises many types for corrupt data
        raise CgmbenchError(f"corrupt or unreadable image {path}: {type(e).__name__}: {e}",
                            "replace or delete the file") from None
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy()


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
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def save_png(image: np.ndarray, path: str | Path) -> None:
    Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(path)
