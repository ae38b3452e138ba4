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
