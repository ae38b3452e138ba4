"""Reading specimen photos with Pillow: orientation, modes and bit depths made uniform.

``load_photo`` returns an 8-bit RGB image the right way up, whatever the file held
(EXIF orientation, RGBA/LA with transparency on white, palette, CMYK, greyscale, 16-bit
greyscale or RGB TIFF, the first frame of a multi-page TIFF), or raises InputFormatError
with a specific reason (empty, truncated, not an image, unsupported).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import InputFormatError
from engine.records import Taxonomy

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


def _to_rgb8(img):
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        return Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode == "RGB":
        return img
    return img.convert("RGB")  # P, L, 1, CMYK, YCbCr, LAB, HSV


def load_photo(path: str | Path):
    """An 8-bit RGB PIL image, EXIF-rotated; raises InputFormatError on a bad file."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputFormatError(f"{path.name}: cannot read file ({exc.strerror or exc})") from exc
    if size == 0:
        raise InputFormatError(f"{path.name}: the image file is empty (0 bytes)")
    try:
        with Image.open(path) as img:
            img.seek(0)  # multi-page TIFF: the first page is the specimen photo
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb8(img)
    except UnidentifiedImageError as exc:
        raise InputFormatError(f"{path.name}: not an image Pillow can read") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc)
        if "truncated" in msg or "broken data stream" in msg or "image file is truncated" in msg:
            raise InputFormatError(f"{path.name}: truncated or damaged image ({msg})") from exc
        raise InputFormatError(f"{path.name}: unreadable image ({msg})") from exc
    except Image.DecompressionBombError as exc:
        raise InputFormatError(f"{path.name}: image too large to open safely ({exc})") from exc


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
