"""PIE-Bench and PIE-Bench++ annotations as plain records.

**PIE-Bench** (cure-lab/PnPInversion, 700 images; distributed through a Google Form, no licence file): a folder
``data/`` with ``annotation_images/<type folder>/.../<id>.jpg`` and ``mapping_file.json``, a JSON object keyed by
the 12-digit image id. Each entry holds

=======================  =============================================================================
``image_path``           path relative to ``annotation_images/``
``original_prompt``      source caption; ``[...]`` marks the words the edit changes
``editing_prompt``       target caption, same markers (the evaluation strips ``[`` and ``]``)
``editing_instruction``  instruction for instruction-following editors
``editing_type_id``      ``"0"`` ... ``"9"`` (:data:`EDIT_TYPES`)
``blended_word``         ``"source_word target_word"`` (Prompt-to-Prompt LocalBlend)
``mask``                 run-length list ``[start, length, start, length, ...]`` over the row-major
                         flattened 512x512 image, 1 = region to edit (not COCO RLE)
=======================  =============================================================================

**PIE-Bench++** (Hugging Face ``UB-CVML-Group/PIE_Bench_pp``, CC-BY-SA-4.0): the same 700 images with revised
prompts, as Parquet, one folder per PIE-Bench type (``0_random_140/V1-00000-of-00001.parquet``, ...); string
columns ``id``, ``source_prompt``, ``target_prompt``, ``edit_action``, ``aspect_mapping``, ``blended_words``,
``mask`` (the same start/length runs as space-separated text) and ``image`` (``{"bytes", "path"}``, the encoded
file). ``edit_action``, ``aspect_mapping`` and ``blended_words`` are kept as the raw strings (their inner format
is not documented by the card). Reading needs ``pyarrow`` (a pandas dependency); without it a clear error says so.

Mask decoding (:func:`decode_mask`) follows PIE-Bench's ``mask_decode``: each run sets ``length`` pixels from
``start``, clipped at the end of the image; then the **1-pixel frame border is set to 1** ("to avoid annotation
errors in boundary"), so border pixels never count as background. ``force_border=False`` gives the raw runs.
Records keep the runs and decode on request (700 decoded masks would take 180 MB).
"""

from __future__ import annotations

import io
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

import numpy as np

from cgmbench.errors import CgmbenchError

#: ``editing_type_id`` -> PIE-Bench folder name (also the PIE-Bench++ config name)
EDIT_TYPES = {
    0: "0_random_140",
    1: "1_change_object_80",
    2: "2_add_object_80",
    3: "3_delete_object_80",
    4: "4_change_attribute_content_40",
    5: "5_change_attribute_pose_40",
    6: "6_change_attribute_color_40",
    7: "7_change_attribute_material_40",
    8: "8_change_background_80",
    9: "9_change_style_80",
}
IMAGE_SHAPE = (512, 512)
MAPPING_FIELDS = ("image_path", "original_prompt", "editing_prompt", "editing_type_id", "mask")
PARQUET_COLUMNS = ("image", "id", "source_prompt", "target_prompt", "edit_action", "aspect_mapping",
                   "blended_words", "mask")


def strip_brackets(prompt: str) -> str:
    """The prompt without PIE-Bench's ``[`` ``]`` edit markers (what its evaluation feeds to CLIP)."""
    return prompt.replace("[", "").replace("]", "")


def parse_rle(value: Any, where: str = "mask") -> tuple[int, ...]:
    """Start/length runs from a JSON list of ints or a space- (or comma-) separated string of ints."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                raise CgmbenchError(f"{where}: mask is not a valid list: {e}") from None
        else:
            parts = [p for p in re.split(r"[\s,]+", text) if p]
            if not all(re.fullmatch(r"\d+", p) for p in parts):
                raise CgmbenchError(f"{where}: mask must hold non-negative integers, got {text[:60]!r}")
            value = [int(p) for p in parts]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                       for v in value):
        raise CgmbenchError(f"{where}: mask must be a list of integers [start, length, ...]")
    if len(value) % 2:
        raise CgmbenchError(f"{where}: mask has {len(value)} numbers; runs come in (start, length) pairs")
    if any(v < 0 for v in value):
        raise CgmbenchError(f"{where}: mask has a negative start or length")
    return tuple(int(v) for v in value)


def decode_mask(rle: Any, shape: tuple[int, int] = IMAGE_SHAPE, force_border: bool = True,
                where: str = "mask") -> np.ndarray:
    """bool ``[H, W]`` edit mask (True = edit) from start/length runs over the row-major flattened image.

    A run past the end is clipped (as PIE-Bench); a run *starting* past the end means the runs belong to another
    image size and raises. ``force_border``: set the 1-pixel frame to True, PIE-Bench's rule.
    """
    runs = parse_rle(rle, where)
    h, w = shape
    flat = np.zeros(h * w, dtype=bool)
    for start, length in zip(runs[::2], runs[1::2]):
        if start >= h * w:
            raise CgmbenchError(f"{where}: a run starts at pixel {start}, past the end of a {h}x{w} image",
                                "decode with the image's real shape (PIE-Bench masks are 512x512)")
        flat[start:start + length] = True
    mask = flat.reshape(h, w)
    if force_border:
        mask[0, :] = mask[-1, :] = True
        mask[:, 0] = mask[:, -1] = True
    return mask


@dataclass(frozen=True)
class PieBenchRecord:
    """One PIE-Bench / PIE-Bench++ edit. Prompts keep their ``[`` ``]`` markers (``*_plain`` strip them)."""

    id: str
    edit_type: int
    source_prompt: str
    target_prompt: str
    mask_rle: tuple[int, ...]
    layout: str  # "pie_bench" or "pie_bench_pp"
    instruction: str | None = None
    blended_words: str | None = None
    image_path: str | None = None  # PIE-Bench: relative to annotation_images/
    image_bytes: bytes | None = None  # PIE-Bench++: the encoded image file
    edit_action: str | None = None  # PIE-Bench++ raw string
    aspect_mapping: str | None = None  # PIE-Bench++ raw string

    @property
    def edit_type_name(self) -> str:
        return EDIT_TYPES[self.edit_type]

    @property
    def source_prompt_plain(self) -> str:
        return strip_brackets(self.source_prompt)

    @property
    def target_prompt_plain(self) -> str:
        return strip_brackets(self.target_prompt)

    def mask(self, shape: tuple[int, int] = IMAGE_SHAPE, force_border: bool = True) -> np.ndarray:
        """The decoded edit mask, bool ``[H, W]`` (True = edit), PIE-Bench's border rule by default."""
        return decode_mask(self.mask_rle, shape, force_border, where=f"record {self.id}")

    def image(self, annotation_images: str | Path | None = None) -> np.ndarray:
        """The source image as uint8 ``[3, H, W]``; PIE-Bench needs its ``annotation_images`` folder."""
        if self.image_bytes is not None:
            return _decode_image_bytes(self.image_bytes, f"record {self.id}")
        if annotation_images is None or self.image_path is None:
            raise CgmbenchError(f"record {self.id}: pass the annotation_images folder to read {self.image_path}")
        from cgmbench.images import read_image

        return read_image(Path(annotation_images) / self.image_path)


# -- PIE-Bench: mapping_file.json ------------------------------------------------------------------------------


def load_pie_bench(mapping_file: str | Path, edit_types: Iterable[int] | None = None) -> list[PieBenchRecord]:
    """Records of PIE-Bench's ``mapping_file.json`` in file order (optionally only some ``edit_types``)."""
    path = Path(mapping_file)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise CgmbenchError(f"cannot read PIE-Bench mapping file {path}: {e.strerror}",
                            "get PIE-Bench from the PnPInversion README (Google Form) and pass data/mapping_file.json")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CgmbenchError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise CgmbenchError(f"{path}: expected a JSON object keyed by image id, got {type(data).__name__}")
    wanted = None if edit_types is None else {int(t) for t in edit_types}
    records = []
    for key, item in data.items():
        where = f"{path} entry {key!r}"
        if not isinstance(item, dict):
            raise CgmbenchError(f"{where}: expected an object, got {type(item).__name__}")
        missing = [f for f in MAPPING_FIELDS if f not in item]
        if missing:
            raise CgmbenchError(f"{where}: missing field(s) {', '.join(missing)}")
        edit_type = _edit_type(item["editing_type_id"], where)
        if wanted is not None and edit_type not in wanted:
            continue
        records.append(PieBenchRecord(
            id=str(key),
            edit_type=edit_type,
            source_prompt=_text(item["original_prompt"], where, "original_prompt"),
            target_prompt=_text(item["editing_prompt"], where, "editing_prompt"),
            mask_rle=parse_rle(item["mask"], where),
            layout="pie_bench",
            instruction=_optional_text(item.get("editing_instruction"), where, "editing_instruction"),
            blended_words=_optional_text(item.get("blended_word"), where, "blended_word"),
            image_path=_relative_path(item["image_path"], where),
        ))
    return records


# -- PIE-Bench++: Parquet ----------------------------------------------------------------------------------------


def load_pie_bench_pp(path: str | Path, configs: Iterable[str] | None = None) -> list[PieBenchRecord]:
    """Records of PIE-Bench++ Parquet files.

    ``path``: the dataset folder (``<config>/V1-*.parquet`` for the ten configs of :data:`EDIT_TYPES`, as the
    Hugging Face snapshot lays it out) or one Parquet file inside a config folder. The edit type is the config's.
    ``configs``: only these config names. Records come in config order, then file and row order.
    """
    root = Path(path)
    files: list[tuple[int, Path]] = []
    if root.is_file():
        files.append((_config_type(root.parent.name, root), root))
    elif root.is_dir():
        chosen = set(configs) if configs is not None else set(EDIT_TYPES.values())
        unknown = chosen - set(EDIT_TYPES.values())
        if unknown:
            raise CgmbenchError(f"unknown PIE-Bench++ config(s) {sorted(unknown)}; known: {list(EDIT_TYPES.values())}")
        for t, name in EDIT_TYPES.items():
            if name in chosen:
                files += [(t, f) for f in sorted((root / name).glob("*.parquet"))]
        if not files:
            raise CgmbenchError(f"no PIE-Bench++ Parquet files under {root}",
                                "expected <config>/V1-00000-of-00001.parquet folders as in UB-CVML-Group/PIE_Bench_pp")
    else:
        raise CgmbenchError(f"PIE-Bench++ path {root} does not exist")
    return [rec for t, f in files for rec in _read_parquet_file(f, t)]


def _read_parquet_file(path: Path, edit_type: int) -> list[PieBenchRecord]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise CgmbenchError("reading PIE-Bench++ Parquet files needs pyarrow, which is not installed",
                            "pip install pyarrow") from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise CgmbenchError(f"cannot read Parquet file {path}: {type(e).__name__}: {e}") from None
    missing = [c for c in PARQUET_COLUMNS if c not in table.column_names]
    if missing:
        raise CgmbenchError(f"{path}: missing column(s) {', '.join(missing)}; PIE-Bench++ has {list(PARQUET_COLUMNS)}")
    records = []
    for i, row in enumerate(table.to_pylist()):
        where = f"{path} row {i}"
        records.append(PieBenchRecord(
            id=_text(row["id"], where, "id"),
            edit_type=edit_type,
            source_prompt=_text(row["source_prompt"], where, "source_prompt"),
            target_prompt=_text(row["target_prompt"], where, "target_prompt"),
            mask_rle=parse_rle(_text(row["mask"], where, "mask"), where),
            layout="pie_bench_pp",
            blended_words=_optional_text(row["blended_words"], where, "blended_words"),
            image_bytes=_image_bytes(row["image"], where),
            edit_action=_optional_text(row["edit_action"], where, "edit_action"),
            aspect_mapping=_optional_text(row["aspect_mapping"], where, "aspect_mapping"),
        ))
    return records


# -- field checks -----------------------------------------------------------------------------------------------


def _edit_type(value: Any, where: str) -> int:
    text = str(value).strip()
    if not re.fullmatch(r"\d", text) or isinstance(value, bool):
        raise CgmbenchError(f"{where}: editing_type_id must be one of '0'..'9', got {value!r}")
    return int(text)


def _config_type(name: str, path: Path) -> int:
    for t, config in EDIT_TYPES.items():
        if name == config:
            return t
    raise CgmbenchError(f"{path}: its folder {name!r} is not a PIE-Bench++ config, so its edit type is unknown",
                        f"keep the Hugging Face layout <config>/V1-*.parquet with <config> one of "
                        f"{list(EDIT_TYPES.values())}")


def _text(value: Any, where: str, field: str) -> str:
    if not isinstance(value, str):
        raise CgmbenchError(f"{where}: field {field} must be a string, got {type(value).__name__}")
    return value


def _optional_text(value: Any, where: str, field: str) -> str | None:
    return None if value is None else _text(value, where, field)


def _relative_path(value: Any, where: str) -> str:
    text = _text(value, where, "image_path")
    p = PurePosixPath(text.replace("\\", "/"))
    if not text or p.is_absolute() or ".." in p.parts:
        raise CgmbenchError(f"{where}: image_path {text!r} must be relative to annotation_images/ without '..'")
    return str(p)


def _image_bytes(value: Any, where: str) -> bytes:
    if isinstance(value, dict):
        value = value.get("bytes")
    if not isinstance(value, (bytes, bytearray)) or not value:
        raise CgmbenchError(f"{where}: image must hold the encoded file bytes ({{'bytes': ..., 'path': ...}})")
    return bytes(value)


def _decode_image_bytes(data: bytes, where: str) -> np.ndarray:
    from PIL import Image

    from cgmbench.images import MAX_PIXELS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                if im.size[0] * im.size[1] > MAX_PIXELS:
                    raise CgmbenchError(f"{where}: image is {im.size[0]}x{im.size[1]}, over the pixel limit")
                rgb = im.convert("RGB")
    except CgmbenchError:
        raise
    except Exception as e:  # PIL raises many types for corrupt data
        raise CgmbenchError(f"{where}: corrupt or unreadable image bytes: {type(e).__name__}: {e}") from None
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy()
