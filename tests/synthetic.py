"""Small synthetic barcode data sets made by the tests (no real data needed).

Sequences are made of codons without the table-5 stop codons (TAA, TAG), so they read
like COI: QC sees an open reading frame in frame 0. A genus has an ancestral sequence,
its species differ from it at ``species_divergence`` of codons, and records of a species
differ from the species at ``record_divergence``.
"""
from __future__ import annotations

import itertools

import numpy as np

from engine.records import Barcode, Taxonomy

CODONS = ["".join(c) for c in itertools.product("ACGT", repeat=3) if "".join(c) not in ("TAA", "TAG")]


def _mutate(codons: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    out = codons.copy()
    m = rng.random(len(out)) < rate
    out[m] = rng.integers(0, len(CODONS), int(m.sum()))
    return out


def make_barcodes(
    genera: int = 4, species_per_genus: int = 3, records_per_species: int = 6, length_codons: int = 219,
    species_divergence: float = 0.08, record_divergence: float = 0.01, seed: int = 0, family_of_genus=None,
) -> list[Barcode]:
    rng = np.random.default_rng(seed)
    out = []
    for g in range(genera):
        genus_seq = rng.integers(0, len(CODONS), length_codons)
        family = family_of_genus(g) if family_of_genus else f"Synthidae{g % 2}"
        for s in range(species_per_genus):
            sp_seq = _mutate(genus_seq, species_divergence, rng)
            for r in range(records_per_species):
                rec = _mutate(sp_seq, record_divergence, rng)
                tax = Taxonomy(order="Synthoptera", family=family, genus=f"Genus{g}",
                               species=f"Genus{g} species{s}", bin_uri=f"BOLD:SYN{g:02d}{s:02d}")
                seq = "".join(CODONS[c] for c in rec)
                out.append(Barcode(f"SYN{g}-{s}-{r}", seq, "synthetic", tax))
    return out


def write_tsv(path, records: list[Barcode]) -> None:
    """A BIOSCAN-5M style table (processid, taxonomy, dna_barcode)."""
    cols = ["processid", "order", "family", "genus", "species", "dna_bin", "dna_barcode"]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\t".join(cols) + "\n")
        for r in records:
            t = r.taxonomy
            fh.write("\t".join([r.specimen_id, t.order, t.family, t.genus, t.species, t.bin_uri, r.sequence]) + "\n")


def write_fasta(path, records: list[Barcode]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(f">{r.specimen_id}\n{r.sequence}\n")
