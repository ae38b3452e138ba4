"""A reference library built from a BOLD v5 data package, whose records are named to different ranks.

The package's COI-5P records are split 80/20 (seed 0); the 80 % become a library, the 20 % are
identified against it with the bundled DNA model, and each rank's calls are counted and checked
against the query's own name where the package gives one. Two libraries: all references (those
identified only to order, family or genus too) and the species-named references alone (what
`library build` kept before it took references at the ranks they have).

    .venv/bin/python benchmarks/bold_package_library.py [PACKAGE.tsv]

Default package: ../shared/data/raw/bold_data_packages/BOLD_Public.18-Dec-2023.tsv.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from engine.build import add_barcodes, calibrate_library
    from engine.identify import DnaIdentifier
    from engine.io import read_barcodes
    from engine.library import ReferenceLibrary
    from engine.models.dna_encoder import DnaEncoder
    from engine.records import Barcode
    from engine.resources import default_model_path
    from tests.conftest import shared_data_dir

    if len(sys.argv) > 1:
        package = Path(sys.argv[1])
    else:
        data = shared_data_dir()
        if data is None:
            sys.exit("real data not found: set BIOSCAN_DATA or place it at ../shared/data")
        package = data / "raw" / "bold_data_packages" / "BOLD_Public.18-Dec-2023.tsv"
    recs = [r for r in read_barcodes(package) if isinstance(r, Barcode)]
    is_query = np.random.default_rng(0).random(len(recs)) < 0.2
    queries = [r for r, q in zip(recs, is_query) if q]
    refs = [r for r, q in zip(recs, is_query) if not q]
    truth = {r.specimen_id: r.taxonomy for r in queries}
    encoder = DnaEncoder.from_path(default_model_path("dna"))
    print(f"{package.name}: {len(refs)} library records, {len(queries)} queries")
    with tempfile.TemporaryDirectory() as tmp:
        for label, use in (("all references", refs),
                           ("species-named only", [r for r in refs if r.taxonomy and r.taxonomy.species])):
            t0 = time.perf_counter()
            lib = ReferenceLibrary.create(Path(tmp) / f"{len(use)}.db")
            add_barcodes(lib, use, encoder)
            calibrate_library(lib)
            results = DnaIdentifier(lib, encoder).identify(queries)
            cells = []
            for rank in ("order", "family", "genus", "species"):
                called = [(r.call.name(rank), truth[r.specimen_id].get(rank) if truth[r.specimen_id] else "")
                          for r in results if r.call and r.call.name(rank)]
                judged = [(a, b) for a, b in called if b]
                cells.append(f"{rank} {len(called)} called, {sum(a == b for a, b in judged)}/{len(judged)} right")
            print(f"{label} ({len(use)}): " + "; ".join(cells) + f" [{time.perf_counter() - t0:.0f} s]")


if __name__ == "__main__":
    main()
