"""Reading specimen photos with Pillow: costs bounded, orientation, modes and bit depths made uniform.

``load_photo`` returns an 8-bit RGB image the right way up, whatever the file held
(EXIF orientation, RGBA/LA with transparency on white, palette, CMYK, greyscale, 16-bit
greyscale or RGB TIFF, the first frame of a multi-page TIFF or an animated GIF/PNG), or raises
InputFormatError with a specific reason (empty, truncated, not an image, unsupported, too large,
too elongated, NaN pixels). ``check_photo``, what identify, import and library build read photos
with, adds the facts the GUI shows and refuses photos that cannot show a specimen (too small,
blank): an error row with the reason, never a call.

Cost: the header is read first (``Image.open`` is lazy) and images beyond the bounds below are
refused before any pixel is decoded; with ``min_side`` (the preprocessing's decode_side) a JPEG is
decoded at 1/2, 1/4 or 1/8 scale (``Image.draft``) and any other photo is ``reduce``-d right
after decoding, so what is kept is under twice min_side on its shorter side, whatever the camera.
Every exception Pillow or numpy raises on a file becomes an InputFormatError naming it, or a
TransientError (engine.errors) for out-of-memory and I/O failures worth retrying.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import BioscanError, InputFormatError, TransientError, is_transient
from engine.records import Taxonomy

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")

# Bounds checked on the header, before decoding. The largest camera sensors are 100-150 MP (Phase
# One IQ4 150 MP, Fujifilm GFX100 102 MP) and a whole A4 plate scanned at 1200 dpi is 140 MP; more
# than MAX_PIXELS is not a specimen photo, and decoding it would take > 600 MB as RGB.
MAX_PIXELS = 200_000_000
# A side this short cannot show a specimen (the model looks at 224 px; a thumbnail strip is 32+ px).
MIN_SIDE = 16
# Panoramas and scans of a plate's row of wells stay under ~8:1; a longer strip is a banner, a
# scanner calibration line or a crafted "bomb" (100000x2 px) that resizing would blow up.
MAX_ASPECT = 20.0
# A photo is blank when, shrunk to BLANK_THUMB_SIDE px (which averages sensor noise away), the
# spread between its 0.1 and 99.9 percentile of every channel is below BLANK_SPREAD grey levels.
# The least varied of the 7,079 real photos in the shared data has a spread of 53.
BLANK_THUMB_SIDE = 32
BLANK_SPREAD = 20
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_UNREDUCIBLE_MODES = ("1", "P", "PA") + _WIDE_MODES  # reduce() averages palette indices, or refuses
_CONVERT_ROWS = 1 << 20  # pixels converted at a time from a 16-bit or float image
_PILLOW_PIXELS = re.compile(r"\((\d+) pixels\)")


def _pillow():
    from PIL import Image

    # Pillow's own bomb check (a warning above MAX_IMAGE_PIXELS, an error above twice that) follows
    # the same bound; the warning is made an error where photos are opened
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    return Image


def _cost_problem(width: int, height: int) -> str:
    """Why decoding a photo of this declared size is refused ("" if it is not)."""
    if width * height > MAX_PIXELS:
        return (f"image too large to decode safely ({width:,} x {height:,} px = {width * height / 1e6:,.0f} MP; "
                f"the limit is {MAX_PIXELS / 1e6:,.0f} MP)")
    short, long = min(width, height), max(width, height)
    if short >= 1 and long > MAX_ASPECT * short:
        return (f"image too elongated to be a specimen photo ({width:,} x {height:,} px, {long / short:,.0f}:1; "
                f"the limit is {MAX_ASPECT:.0f}:1)")
    return ""


def _size_problem(width: int, height: int) -> str:
    """Why a photo of this size cannot show a specimen ("" if it can)."""
    if min(width, height) < MIN_SIDE:
        return f"image too small to show a specimen ({width:,} x {height:,} px; each side needs at least {MIN_SIDE} px)"
    return ""


def _header_facts(img) -> dict[str, Any]:
    """What the header says: size (the right way up), format, mode, frames, EXIF orientation."""
    try:
        orientation = int(img.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - damaged EXIF: the picture itself may still be fine
        orientation = 1
    try:
        frames = int(getattr(img, "n_frames", 1))
    except Exception:  # noqa: BLE001 - a damaged later frame: the first one is the photo
        frames = 1
    width, height = img.size
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return {"width": width, "height": height, "image_format": img.format or "", "image_mode": img.mode,
            "frames": frames, "exif_orientation": orientation if 1 <= orientation <= 8 else 1}


def _reduced(img, min_side: int):
    """``img`` shrunk by the largest whole factor that keeps its shorter side >= min_side (0: as is)."""
    factor = min(img.size) // min_side if min_side else 1
    return img.reduce(factor) if factor >= 2 else img


def _wide_to_rgb8(img, name: str):
    """A 16-bit, 32-bit integer or float image as 8-bit grey RGB, converted a band of rows at a time
    (a float64 copy of a whole 200 MP image would be 1.6 GB); refuses NaN and infinite pixels."""
    from PIL import Image

    width, height = img.size
    rows = max(1, _CONVERT_ROWS // max(width, 1))
    bands = [(0, y, width, min(height, y + rows)) for y in range(0, height, rows)]
    if img.mode.startswith("I;16"):
        hi = 65535.0
    else:
        top, bad = -np.inf, 0
        for box in bands:
            a = np.asarray(img.crop(box), dtype=np.float64)
            finite = np.isfinite(a)
            bad += a.size - int(np.count_nonzero(finite))
            top = max(top, float(a[finite].max(initial=-np.inf)))
        if bad:
            raise InputFormatError(f"{name}: float image with NaN or infinite pixels "
                                   f"({bad:,} of {width * height:,}): no picture to identify")
        # 16-bit values in a 32-bit image, 8-bit values, or a float image scaled to [0, 1]
        hi = 65535.0 if top > 255 else 1.0 if img.mode == "F" and top <= 1.0 else 255.0
    out = np.empty((height, width), dtype=np.uint8)
    for box in bands:
        a = np.asarray(img.crop(box), dtype=np.float64)
        out[box[1]:box[3]] = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(out, "L").convert("RGB")


def _to_rgb8(img, name: str):
    from PIL import Image

    if img.mode in _WIDE_MODES:
        return _wide_to_rgb8(img, name)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode == "RGB":
        return img
    return img.convert("RGB")  # P, L, 1, CMYK, YCbCr, LAB, HSV


def _upright(img, orientation: int):
    """Transposed as EXIF orientation says (Pillow's ImageOps.exif_transpose mapping); applied
    here because a reduced copy no longer carries a TIFF's orientation tag."""
    from PIL import Image

    method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}.get(orientation)
    return img.transpose(method) if method is not None else img


def _failure(name: str, exc: Exception) -> BioscanError:
    """The user-facing error for an exception raised while reading or decoding a photo."""
    detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if is_transient(exc):
        return TransientError(f"{name}: could not read the image now ({type(exc).__name__}: {detail}); "
                              "it is tried again on the next run")
    if isinstance(exc, OSError) and exc.errno is not None:  # the file system's error, not the decoder's
        return InputFormatError(f"{name}: cannot read file ({detail})")
    if "truncated" in detail or "broken data stream" in detail:
        return InputFormatError(f"{name}: truncated or damaged image ({detail})")
    if isinstance(exc, (OSError, SyntaxError, ValueError)):
        return InputFormatError(f"{name}: unreadable image ({detail})")
    return InputFormatError(f"{name}: unreadable image ({type(exc).__name__}: {detail})")


def _decode(path: str | Path, min_side: int = 0, usable_only: bool = False):
    """(8-bit RGB image, header facts); bounded before decoding, every failure a BioscanError.

    ``usable_only`` also refuses photos that cannot show a specimen: too small, blank.
    """
    Image = _pillow()
    from PIL import UnidentifiedImageError

    path = Path(path)
    nbytes = 0
    try:
        nbytes = path.stat().st_size
        if nbytes == 0:
            raise InputFormatError(f"{path.name}: the image file is empty (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data" and the like: the outcome says it
            with Image.open(path) as img:
                facts = _header_facts(img)
                problem = _cost_problem(*img.size) or (_size_problem(*img.size) if usable_only else "")
                if problem:
                    raise InputFormatError(f"{path.name}: {problem}")
                img.seek(0)  # multi-page TIFF, animated GIF/PNG: the first frame is the specimen photo
                if min_side and min(img.size) // min_side >= 2:
                    img.draft(img.mode, (min_side, min_side))  # JPEG: decoded at 1/2, 1/4 or 1/8 scale
                img.load()
                if img.mode not in _UNREDUCIBLE_MODES:
                    img = _reduced(img, min_side)
                img = _reduced(_to_rgb8(img, path.name), min_side)
                problem = blank_problem(img) if usable_only else ""
                if problem:
                    raise InputFormatError(f"{path.name}: {problem}")
                return _upright(img, facts["exif_orientation"]), facts
    except BioscanError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = _PILLOW_PIXELS.search(str(exc))  # Pillow's check ran before the header could be read
        size = f"{int(found.group(1)) / 1e6:,.0f} MP" if found else "more pixels than Pillow allows"
        raise InputFormatError(f"{path.name}: image too large to decode safely ({size} declared in a "
                               f"{nbytes:,}-byte file; the limit is {MAX_PIXELS / 1e6:,.0f} MP)") from exc
    except UnidentifiedImageError as exc:
        raise InputFormatError(f"{path.name}: not an image Pillow can read") from exc
    except Exception as exc:  # Pillow's plugins raise anything on a crafted file
        raise _failure(path.name, exc) from exc


def load_photo(path: str | Path, min_side: int = 0):
    """An 8-bit RGB PIL image, EXIF-rotated; raises InputFormatError (TransientError) on a bad file.

    With ``min_side`` a large photo is decoded or reduced to a whole fraction of its size whose
    shorter side is still >= min_side (pass the model's input size); 0 keeps full resolution.
    """
    return _decode(path, min_side)[0]


def blank_problem(image) -> str:
    """Why an 8-bit RGB image shows no specimen ("" if it may): near-constant, all black or all white."""
    factor = max(1, min(image.size) // BLANK_THUMB_SIDE)
    a = np.asarray(image.reduce(factor) if factor > 1 else image, dtype=np.float32).reshape(-1, 3)
    low, high = np.percentile(a, [0.1, 99.9], axis=0)
    spread = float((high - low).max())
    if spread >= BLANK_SPREAD:
        return ""
    mean = float(a.mean())
    kind = "all black" if mean < 32 else "all white" if mean > 223 else "one flat colour"
    return (f"blank image: no specimen visible ({kind}; its pixels vary by {spread:.0f} grey levels, "
            f"a specimen photo's by {BLANK_SPREAD} or more)")


def check_photo(path: str | Path, min_side: int = 0) -> tuple[Any, dict[str, Any]]:
    """load_photo's image plus the facts the GUI shows; also refuses photos too small or blank
    to show a specimen (identify, import and library build read photos with it).

    Facts: width and height (full resolution, the right way up), image_format, image_mode,
    frames, exif_orientation. Raises InputFormatError with the reason, or TransientError.
    """
    return _decode(path, min_side, usable_only=True)


@dataclass
class LabelledPhoto:
    """A photo named in a labels table (taxonomy may be partial, e.g. order only)."""

    path: Path
    specimen_id: str
    taxonomy: Taxonomy
    label: str = ""  # free-text group label (e.g. "bees") when no rank names it


LABEL_FILES = ("labels.tsv", "labels.csv")


def find_photos(paths) -> list[Path]:
    """Photo files named, and photos found recursively in folders named, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in PHOTO_SUFFIXES
                              and not f.name.startswith(".")))
        elif p.suffix.lower() in PHOTO_SUFFIXES:
            out.append(p)
    return out


def read_photo_labels(source: str | Path) -> list[LabelledPhoto]:
    """Photos of a labels table (a ``file`` column relative to the table, taxonomy columns).

    ``source`` is the table or a folder holding labels.tsv / labels.csv; the specimen id is
    the table's id column (processid, sampleid, ...) or else the file's stem.
    """
    from engine.io.tables import read_table

    source = Path(source)
    if source.is_dir():
        table_path = next((source / n for n in LABEL_FILES if (source / n).is_file()), None)
        if table_path is None:
            raise InputFormatError(f"{source}: no {' or '.join(LABEL_FILES)} naming the photos and their taxa")
    else:
        table_path = source
    table = read_table(table_path)
    if "file" not in table.header:
        raise InputFormatError(f"{table_path.name}: a photo labels table needs a 'file' column")
    out = []
    for line, row in table.rows():
        if isinstance(row, str):
            raise InputFormatError(f"{table_path.name}: {row}")
        tax = Taxonomy(**{rank: row.get(col, "") for rank, col in table.taxonomy_columns.items()})
        ids = [row.get(c, "") for c in ("processid", "sampleid", "specimen_id") if row.get(c, "")]
        path = table_path.parent / row["file"]
        out.append(LabelledPhoto(path, ids[0] if ids else path.stem, tax, row.get("label", "")))
    return out
