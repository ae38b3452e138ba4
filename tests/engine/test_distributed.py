"""The cluster path (a 2-worker local Dask cluster the test starts) builds the same library and
gives the same calls as the local path."""
from __future__ import annotations

import csv

import pytest

pytest.importorskip("distributed", reason="needs the [cluster] extra (dask[distributed])")

from engine.cli import main  # noqa: E402
from engine.library import ReferenceLibrary  # noqa: E402
from tests.synthetic import write_fasta, write_tsv  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    """A running 2-worker cluster's scheduler address (the CLI connects to it as to a real one)."""
    from engine.distributed import connect

    with connect("local:2") as client:
        assert len(client.scheduler_info()["workers"]) == 2
        yield client.scheduler.address


def _library_content(path):
    lib = ReferenceLibrary.open(path)
    rows = lib.db.execute("SELECT record_id, embedding, seq_block, seq_index, \"order\", species FROM refs "
                          "ORDER BY id").fetchall()
    blocks = lib.db.execute("SELECT data FROM seq_blocks ORDER BY id").fetchall()
    calibration = lib.calibration
    lib.close()
    return rows, blocks, calibration


def test_a_library_built_on_the_cluster_is_the_local_build(tmp_path, tiny_dna_pack, synthetic_split):
    tsv = tmp_path / "refs.tsv"
    write_tsv(tsv, synthetic_split[0] * 1)
    local, remote = tmp_path / "local.db", tmp_path / "cluster.db"
    assert main(["library", "build", "--barcodes", str(tsv), "--out", str(local), "--model", str(tiny_dna_pack),
                 "-q"]) == 0
    assert main(["library", "build", "--barcodes", str(tsv), "--out", str(remote), "--model", str(tiny_dna_pack),
                 "--cluster", "local:2", "-q"]) == 0
    a, b = _library_content(local), _library_content(remote)
    assert len(a[0]) == len(synthetic_split[0])
    assert a == b  # the same records, embeddings bitwise, sequence blocks and calibration


def test_identify_on_the_cluster_gives_the_local_calls(tmp_path, tiny_library, tiny_dna_pack, synthetic_split,
                                                       cluster, monkeypatch):
    import engine.identify

    monkeypatch.setattr(engine.identify, "IDENTIFY_BATCH", 7)  # several batches, spread over both workers
    fasta = tmp_path / "plate.fasta"
    write_fasta(fasta, synthetic_split[1] + synthetic_split[2])
    outs = {}
    for how, extra in (("local", []), ("cluster", ["--cluster", cluster])):
        outs[how] = tmp_path / f"{how}.csv"
        assert main(["identify", str(fasta), "--library", str(tiny_library), "--model", str(tiny_dna_pack),
                     "--out", str(outs[how]), "-q", *extra]) == 0
    local, remote = (list(csv.DictReader(outs[h].open())) for h in ("local", "cluster"))
    assert len(local) == len(synthetic_split[1]) + len(synthetic_split[2])
    assert local == remote


def test_chunks_for_the_cluster_end_where_local_batches_end(monkeypatch, synthetic_split):
    import engine.identify
    from engine.distributed import _chunks_as_local
    from engine.records import Barcode, RecordError

    monkeypatch.setattr(engine.identify, "IDENTIFY_BATCH", 4)
    recs = list(synthetic_split[1][:9])
    recs.insert(4, RecordError("bad", "f", "unreadable"))
    recs.insert(2, Barcode("short", "ACGT", "f"))  # fails QC: not counted in a batch
    chunks = _chunks_as_local(recs)
    assert [sum(isinstance(r, Barcode) and r.specimen_id != "short" for r in c) for c in chunks] == [4, 4, 1]
    assert [r for c in chunks for r in c] == recs
