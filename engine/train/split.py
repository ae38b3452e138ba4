"""The deterministic benchmark split of a barcode table.

- novel queries: every record of ~10% of the species, drawn from genera that keep at least
  one other species in the library (so the genus stays answerable, the open-world case);
- known queries: one record of each remaining species that has at least 3 records;
- library: everything else.
The bundled DNA model is trained on the library part only, so the benchmark's queries are
unseen by both the model and the library it searches.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

from engine.records import Barcode

SPLIT_SEED = 20261123


@dataclass
class Split:
    library: list[Barcode]
    known_queries: list[Barcode]
    novel_queries: list[Barcode]


def benchmark_split(
    records: Sequence[Barcode], seed: int = SPLIT_SEED, novel_fraction: float = 0.10
) -> Split:
    rng = random.Random(seed)
    by_species: dict[str, list[Barcode]] = defaultdict(list)
    for r in records:
        by_species[r.taxonomy.species].append(r)
    species_by_genus: dict[str, list[str]] = defaultdict(list)
    for sp, recs in by_species.items():
        species_by_genus[recs[0].taxonomy.genus].append(sp)
    eligible = sorted(sp for sps in species_by_genus.values() if len(sps) >= 2 for sp in sps)
    rng.shuffle(eligible)
    target = int(novel_fraction * len(by_species))
    novel: set[str] = set()
    kept_per_genus = {g: len(sps) for g, sps in species_by_genus.items()}
    for sp in eligible:
        if len(novel) >= target:
            break
        g = by_species[sp][0].taxonomy.genus
        if kept_per_genus[g] > 1:
            novel.add(sp)
            kept_per_genus[g] -= 1
    library, known, novel_q = [], [], []
    for sp in sorted(by_species):
        recs = by_species[sp]
        if sp in novel:
            novel_q.extend(recs)
        elif len(recs) >= 3:
            i = rng.randrange(len(recs))
            known.append(recs[i])
            library.extend(recs[:i] + recs[i + 1 :])
        else:
            library.extend(recs)
    return Split(library, known, novel_q)
