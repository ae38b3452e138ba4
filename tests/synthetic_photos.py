"""Small synthetic specimen photos made by the tests: each family has its own colour and
pattern (stripes / checks / blobs) on a noisy background, so a real backbone separates them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

PATTERNS = {
    "Synthidae0": ((200, 60, 40), "stripes"),
    "Synthidae1": ((40, 90, 210), "checks"),
}


def make_photo(family: str, rng: np.random.Generator, size: int = 96):
    from PIL import Image

    colour, pattern = PATTERNS[family]
    yy, xx = np.mgrid[0:size, 0:size]
    period = int(rng.integers(8, 14))
    if pattern == "stripes":
        mask = ((xx + int(rng.integers(0, period))) // (period // 2)) % 2 == 0
    else:
        mask = ((xx // period) + (yy // period)) % 2 == 0
    a = rng.normal(225, 12, (size, size, 3))
    a[mask] = np.array(colour) + rng.normal(0, 15, (int(mask.sum()), 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def write_photo_folder(folder: Path, per_family: int = 8, held_out: int = 3, seed: int = 0) -> Path:
    """JPEGs + labels.tsv (file, order, family, label); the last ``held_out`` of a family are val_*."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["file\torder\tfamily\tlabel"]
    for family in PATTERNS:
        for i in range(per_family):
            split = "val" if i >= per_family - held_out else "train"
            name = f"{split}_{family}_{i}.jpg"
            make_photo(family, rng).save(folder / name, quality=90)
            lines.append(f"{name}\tSynthoptera\t{family}\t")
    (folder / "labels.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder
