"""Reading specimen photos with Pillow: orientation, modes and bit depths made uniform.

``load_photo`` returns an 8-bit RGB image the right way up, whatever the file held
(EXIF orientation, RGBA/LA with transparency on white, palette, CMYK, greyscale, 16-bit
greyscale or RGB TIFF, the first frame of a multi-page TIFF), or raises InputFormatError
with a specific reason (empty, truncated, not an image, unsupported).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.errors import InputFormatError

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
