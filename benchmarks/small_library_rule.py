"""Where engine.assign.SMALL_LIBRARY_RULE's thresholds come from.

A library of one or two species cannot calibrate its novelty cut (engine.assign), so a query
is called at a rank only when its top match is about as close as a barcode's best match of
another taxon at that rank rarely is. This measures, per rank, the best score of a record
against records of another order / family / genus / species:

* identity (alignment, engine.align): 150 QC-passing barcodes of barcodes.tsv (>= 500 bp)
  against a random pool of 2,000 others;
* similarity (cosine of the bundled DNA model's embeddings): 3,000 records of the bundled
  library against the whole library.

    .venv/bin/python benchmarks/small_library_rule.py

Prints the 50/90/95/99th percentiles; the rule takes the 95th, rounded up (a query must be
closer than 95 % of other-taxon best matches to be called at that rank).
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RANKS = ("species", "genus", "family", "order")
QUANTILES = (0.5, 0.9, 0.95, 0.99)


def _data_dir() -> Path:
    from tests.conftest import shared_data_dir

    d = shared_data_dir()
    if d is None:
        sys.exit("real data not found: set BIOSCAN_DATA or place it at ../shared/data")
    return d


def identity_percentiles(seed: int = 0) -> dict[str, np.ndarray]:
    from engine.align import pair_identities
    from engine.qc import check_barcode

    rows = []
    with open(_data_dir() / "barcodes.tsv", encoding="utf-8") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            qc = check_barcode(r["nucleotides"])
            if qc.ok and len(qc.sequence) >= 500:
                rows.append(dict(r, nucleotides=qc.sequence))
    rng = np.random.default_rng(seed)
    pool = [rows[i] for i in rng.choice(len(rows), 2000, replace=False)]
    queries = [rows[i] for i in rng.choice(len(rows), 150, replace=False)]
    ids = pair_identities([(q["nucleotides"], p["nucleotides"]) for q in queries for p in pool])
    ids = ids.reshape(len(queries), len(pool))
    out = {}
    for rank in RANKS:
        other = np.array([[q[rank] != p[rank] for p in pool] for q in queries])
        out[rank] = np.quantile(np.where(other, ids, -1.0).max(axis=1), QUANTILES)
    return out


def similarity_percentiles(seed: int = 0) -> dict[str, np.ndarray]:
    from engine.library import ReferenceLibrary
    from engine.resources import default_library_path

    refs = ReferenceLibrary.open(default_library_path()).references("dna")
    sample = np.random.default_rng(seed).choice(len(refs), 3000, replace=False)
    out = {}
    for rank in RANKS:
        names = np.array([t.get(rank) for t in refs.taxonomy])
        best = []
        for start in range(0, len(sample), 500):
            rows = sample[start:start + 500]
            sims = refs.matrix[rows] @ refs.matrix.T
            best.append(np.where(names[rows][:, None] != names[None, :], sims, -2.0).max(axis=1))
        out[rank] = np.quantile(np.concatenate(best), QUANTILES)
    return out


def main() -> None:
    for kind, fn in (("identity", identity_percentiles), ("similarity", similarity_percentiles)):
        for rank, q in fn().items():
            print(f"{kind:10} best match of another {rank:8} " + " / ".join(f"{v:.3f}" for v in q))


if __name__ == "__main__":
    main()
