"""Shared fixtures. Real data lives beside the repository in ../shared/data (or $BIOSCAN_DATA)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


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
def synthetic_barcodes():
    from tests.synthetic import make_barcodes

    return make_barcodes()


@pytest.fixture(scope="session")
def tiny_dna_pack(tmp_path_factory, synthetic_barcodes) -> Path:
    """A real (tiny) DNA model pack: trained 3 epochs on synthetic barcodes, exported, int8."""
    pytest.importorskip("torch", reason="needs the [train] extra")
    from engine.train.dna import train_dna

    out = tmp_path_factory.mktemp("pack") / "tiny-dna"
    return train_dna(synthetic_barcodes, out, epochs=3, batch_size=32, lr=3e-3, log=lambda m: None)


@pytest.fixture(scope="session")
def tiny_library(tmp_path_factory, tiny_dna_pack, synthetic_barcodes) -> Path:
    """A calibrated library (with sequences) of the synthetic barcodes' records 1..5 of each species."""
    from engine.build import add_barcodes, calibrate_library
    from engine.library import ReferenceLibrary
    from engine.models.dna_encoder import DnaEncoder

    path = tmp_path_factory.mktemp("lib") / "tiny.db"
    lib = ReferenceLibrary.create(path)
    enc = DnaEncoder.from_path(tiny_dna_pack)
    add_barcodes(lib, [b for b in synthetic_barcodes if not b.specimen_id.endswith("-0")], enc)
    calibrate_library(lib)
    return path
