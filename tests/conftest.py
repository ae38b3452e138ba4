"""Shared fixtures. Real data lives beside the repository in ../shared/data (or $BIOSCAN_DATA)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def stable_meta(meta: dict[str, str]) -> dict:
    """A library's meta without what every build or change makes new (its id, creation time and
    generation, also inside the stored totals), so two builds of the same input compare equal."""
    out: dict = {k: v for k, v in meta.items() if k not in ("library_id", "created", "generation")}
    for key in [k for k in out if k.startswith("totals.")]:
        out[key] = {k: v for k, v in json.loads(out[key]).items() if k != "generation"}
    return out


def shared_data_dir() -> Path | None:
    env = os.environ.get("BIOSCAN_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if (cand / "barcodes.tsv").is_file():
            return cand
    return None


@pytest.fixture(scope="session")
def real_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("real data not found: set BIOSCAN_DATA or place it at ../shared/data")
    return d


@pytest.fixture(scope="session")
def synthetic_split():
    """Synthetic barcodes split like the benchmark: library, known-species queries, novel-species queries.

    4 genera x 4 species x 6 records; species3 of every genus is held out entirely (novel), and
    record 0 of every other species is a query of a library species.
    """
    from tests.synthetic import make_barcodes

    recs = make_barcodes(genera=4, species_per_genus=4, records_per_species=6)
    novel = [r for r in recs if r.taxonomy.species.endswith("species3")]
    known = [r for r in recs if r not in novel and r.specimen_id.endswith("-0")]
    library = [r for r in recs if r not in novel and r not in known]
    return library, known, novel


@pytest.fixture(scope="session")
def tiny_dna_pack(tmp_path_factory, synthetic_split) -> Path:
    """A real (tiny) DNA model pack: trained 3 epochs on the synthetic library part, exported, int8."""
    pytest.importorskip("torch", reason="needs the [train] extra")
    from engine.train.dna import train_dna

    out = tmp_path_factory.mktemp("pack") / "tiny-dna"
    return train_dna(synthetic_split[0], out, epochs=3, batch_size=32, lr=3e-3, log=lambda m: None)


@pytest.fixture(scope="session")
def tiny_library(tmp_path_factory, tiny_dna_pack, synthetic_split) -> Path:
    """A calibrated library, with sequences, of the synthetic split's library part."""
    from engine.build import add_barcodes, calibrate_library
    from engine.library import ReferenceLibrary
    from engine.models.dna_encoder import DnaEncoder

    path = tmp_path_factory.mktemp("lib") / "tiny.db"
    lib = ReferenceLibrary.create(path)
    add_barcodes(lib, synthetic_split[0], DnaEncoder.from_path(tiny_dna_pack))
    calibrate_library(lib)
    return path
