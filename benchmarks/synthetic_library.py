"""A synthetic reference library the size of BOLD, evolved from the shared real barcodes.

Each real barcode of ``barcodes.tsv`` and ``barcodes_extra.tsv`` is the ancestor of
pseudo-species: a pseudo-species is the ancestor with 2-6 % of its sites substituted
(transitions twice as likely as transversions, as in COI), and holds 1-20 records, each a
further 0-1 % from the pseudo-species' own sequence. Records keep the ancestor's length,
order, family and genus; species and BIN are new names. The output is a BOLD v5 data package
(``.tsv`` or ``.tsv.gz``: BCDM columns, ``nucraw``, ``marker_code``), the format a lab builds
its real library from, so ``bioscan library build`` reads it as it reads BOLD's own.

    .venv/bin/python benchmarks/synthetic_library.py --records 1000000 --out /tmp/synth_1M.tsv.gz
    .venv/bin/python benchmarks/synthetic_library.py --records 1000 --queries 1000 --out /tmp/q.tsv

``--queries N`` writes N query barcodes instead: records of pseudo-species made the same way
with the same seed (so they belong to species of the library of the same seed) but not in it.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import os
import sys
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("BIOSCAN_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
COLUMNS = ("processid", "sampleid", "bin_uri", "identification", "kingdom", "phylum", "class", "order",
           "family", "subfamily", "genus", "species", "marker_code", "nucraw", "identification_rank")
BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
# transition partner of A C G T: G T A C
TRANSITION = np.array([2, 3, 0, 1], dtype=np.uint8)


def real_barcodes(data: Path) -> list[dict]:
    rows = []
    for name in ("barcodes.tsv", "barcodes_extra.tsv"):
        with open(data / name, newline="") as f:
            for r in csv.DictReader(f, delimiter="\t"):
                seq = r["nucleotides"].upper().replace("-", "")
                if len(seq) >= 400 and set(seq) <= set("ACGTN") and r["genus"]:
                    rows.append(r)
    return rows


def mutate(codes: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Substitute ``rate`` of the sites (A/C/G/T only): transitions 2/3, transversions 1/3."""
    out = codes.copy()
    acgt = np.flatnonzero(out < 4)
    n = rng.binomial(len(acgt), rate)
    if n == 0:
        return out
    sites = rng.choice(acgt, size=n, replace=False)
    old = out[sites]
    transition = rng.random(n) < 2 / 3
    transversion = (old + rng.choice([1, 3], size=n)) % 4  # +2 is the transition partner, +0 the base itself
    out[sites] = np.where(transition, TRANSITION[old], transversion).astype(np.uint8)
    return out


def encode(seq: str) -> np.ndarray:
    lut = np.full(256, 4, dtype=np.uint8)
    lut[np.frombuffer(b"ACGT", dtype=np.uint8)] = np.arange(4, dtype=np.uint8)
    return lut[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]


def decode(codes: np.ndarray) -> str:
    return np.concatenate([BASES, np.frombuffer(b"N", dtype=np.uint8)])[codes].tobytes().decode("ascii")


def records(n_records: int, seed: int, data: Path, queries: bool = False):
    """Rows of a BOLD data package: ``n_records`` references (or, with ``queries``, as many
    query records of the same pseudo-species that are not references)."""
    real = real_barcodes(data)
    made = species = 0
    while made < n_records:
        anc = real[species % len(real)]
        # each pseudo-species has its own stream, so references and queries agree on it
        sp_rng = np.random.default_rng([seed, species])
        centre = mutate(encode(anc["nucleotides"].upper().replace("-", "")), sp_rng.uniform(0.02, 0.06), sp_rng)
        size = int(sp_rng.integers(1, 21))
        name = f"{anc['genus']} synth{species:07d}"
        bin_uri = f"BOLD:S{species:07d}"
        for member in range(size + (2 if queries else 0)):
            rec_rng = np.random.default_rng([seed, species, member])
            seq = mutate(centre, rec_rng.uniform(0.0, 0.01), rec_rng)
            if queries != (member >= size):
                continue
            pid = f"SYN{species:07d}-{member:02d}"
            yield {"processid": pid, "sampleid": pid, "bin_uri": bin_uri, "identification": name,
                   "kingdom": "Animalia", "phylum": "Arthropoda", "class": anc.get("class", ""),
                   "order": anc["order"], "family": anc["family"], "subfamily": anc.get("subfamily", ""),
                   "genus": anc["genus"], "species": name, "marker_code": "COI-5P", "nucraw": decode(seq),
                   "identification_rank": "species"}
            made += 1
            if made >= n_records:
                return
        species += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=0, help="write this many query records instead")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    n = args.queries or args.records
    tmp = args.out.with_name(args.out.name + ".part")
    opener = gzip.open if args.out.suffix == ".gz" else open
    with opener(tmp, "wt", newline="") as raw:
        w = csv.DictWriter(raw, fieldnames=COLUMNS, delimiter="\t", lineterminator="\n")
        w.writeheader()
        for i, row in enumerate(records(n, args.seed, args.data, queries=bool(args.queries)), 1):
            w.writerow(row)
            if i % 100_000 == 0:
                print(f"{i:,} records", file=sys.stderr)
    tmp.replace(args.out)
    print(f"{args.out}: {n:,} records", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
