"""`bioscan demo`: identify a real sample the bundled library has not seen.

With the project's shared data present (``../shared/data`` or ``$BIOSCAN_DATA``), the demo
draws COI-5P records from the raw BOLD download that are *not* among the records the
bundled library was built from: new specimens of (mostly) library species, with their BOLD
identifications to compare against. Without the data it says so and exits.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

from engine.errors import BioscanError
from engine.io import read_barcodes
from engine.records import Barcode

RAW_BOLD = Path("raw") / "InsectClassification_BOLD_records.tsv.gz"


def find_shared_data() -> Path | None:
    here = Path(__file__).resolve().parent.parent
    for cand in filter(None, [os.environ.get("BIOSCAN_DATA"), here.parent / "shared" / "data",
                              Path.cwd().parent / "shared" / "data"]):
        if (Path(cand) / "barcodes.tsv").is_file():
            return Path(cand)
    return None


def draw_demo_sample(data_dir: Path, n: int = 200, seed: int = 1) -> list[Barcode]:
    """n COI-5P BOLD records not in barcodes.tsv (so not in the bundled library)."""
    in_library = {r.specimen_id for r in read_barcodes(data_dir / "barcodes.tsv")}
    pool = [r for r in read_barcodes(data_dir / RAW_BOLD)
            if isinstance(r, Barcode) and r.specimen_id not in in_library and r.taxonomy and r.taxonomy.species
            and r.sequence.strip()]  # BOLD lists COI-5P records whose sequence is not public
    if not pool:
        raise BioscanError(f"{data_dir / RAW_BOLD}: no COI-5P records outside the library to draw from")
    return random.Random(seed).sample(pool, min(n, len(pool)))


def write_fasta(path: Path, records: list[Barcode]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(f">{r.specimen_id} {r.taxonomy.species if r.taxonomy else ''}\n{r.sequence}\n")
