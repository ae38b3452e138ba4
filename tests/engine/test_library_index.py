"""A large library's columns in its index folder: written once, memory-mapped after, rebuilt when stale."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

import engine.library
import engine.reference_columns
from engine.assign import calibrate
from engine.errors import LibraryError
from engine.library import ReferenceLibrary, ReferenceRecord
from engine.records import Taxonomy
from tests.engine.test_library_storage import DIM, stand_in_encoder


def _records(n: int, prefix: str = "R", seed: int = 0) -> list[ReferenceRecord]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n // 4 + 1, DIM))
    return [ReferenceRecord(f"{prefix}{i}", Taxonomy(order="O", family=f"F{i % 3}", genus=f"G{i % 11}",
                                                     species=f"G{i % 11} s{i // 4}" if i % 13 else "",
                                                     bin_uri=f"BOLD:A{i // 8:05d}"),
                            centres[i // 4] + 0.05 * rng.normal(size=DIM), "ACGT" * 50 + "ACGT"[i % 4] * 10)
            for i in range(n)]


def _library(path, n=400):
    lib = ReferenceLibrary.create(path)
    lib.add(_records(n), stand_in_encoder())
    lib.close()
    return path


@pytest.fixture
def indexed(monkeypatch):
    """Libraries of 100 references or more keep an index folder (the real threshold is far larger)."""
    monkeypatch.setattr(engine.library, "INDEX_MIN_REFERENCES", 100)


def _loaded(path):
    lib = ReferenceLibrary.open(path)
    refs = lib.references("dna")
    return lib, refs


def test_an_indexed_library_reads_the_same_references_as_one_read_from_its_rows(tmp_path, monkeypatch):
    path = _library(tmp_path / "lib.db")
    lib, plain = _loaded(path)
    expect = (list(plain.record_ids), list(plain.taxonomy), np.array(plain.matrix), list(plain.sequences),
              plain.index.search(np.array(plain.matrix[:20]), 10))
    lib.close()
    assert not (tmp_path / "lib.db.index").exists()  # a small library keeps no index

    monkeypatch.setattr(engine.library, "INDEX_MIN_REFERENCES", 100)
    for opening in ("writes the index", "memory-maps it"):
        lib, refs = _loaded(path)
        assert (tmp_path / "lib.db.index" / "dna" / "stamp.json").is_file(), opening
        assert isinstance(refs.matrix, np.memmap) and refs.matrix.dtype == np.float16
        assert list(refs.record_ids) == expect[0] and refs.record_ids[7] == expect[0][7]
        assert list(refs.taxonomy) == expect[1] and refs.taxonomy[13] == expect[1][13]
        np.testing.assert_allclose(np.asarray(refs.matrix, np.float32), expect[2], atol=2e-3)
        assert list(refs.sequences) == expect[3]
        sims, pos = refs.index.search(np.array(expect[2][:20]), 10)
        assert (pos[:, 0] == expect[4][1][:, 0]).all()
        np.testing.assert_allclose(sims, expect[4][0], atol=3e-3)
        lib.close()


def test_calibration_on_the_index_columns_equals_calibration_on_lists(tmp_path, indexed):
    path = _library(tmp_path / "lib.db", n=240)
    lib, refs = _loaded(path)
    mat32 = np.asarray(refs.matrix, dtype=np.float32)
    on_columns = calibrate(mat32, refs.taxonomy, n_samples=120)
    on_lists = calibrate(mat32, list(refs.taxonomy), n_samples=120)
    lib.close()
    assert json.dumps(on_columns, sort_keys=True) == json.dumps(on_lists, sort_keys=True)


def test_adding_records_makes_the_index_stale_and_the_next_open_rebuilds_it(tmp_path, indexed):
    path = _library(tmp_path / "lib.db")
    lib, refs = _loaded(path)
    assert len(refs) == 400
    lib.close()
    lib = ReferenceLibrary.open_writable(path)
    # the same ids, new taxonomy: the count and the largest row id alone could not tell
    changed = [ReferenceRecord(r.record_id, Taxonomy(order="P", species="New one"), r.embedding, r.sequence)
               for r in _records(400)[-1:]]
    lib.add(changed, stand_in_encoder())
    lib.close()
    lib, refs = _loaded(path)
    assert len(refs) == 400 and refs.taxonomy[len(refs) - 1].species == "New one"
    lib.close()


def test_a_library_in_a_read_only_folder_keeps_its_index_in_the_user_cache(tmp_path, indexed, monkeypatch):
    if os.geteuid() == 0:
        monkeypatch.setattr(engine.reference_columns.os, "access", lambda p, mode: False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "ro"
    folder.mkdir()
    path = _library(folder / "lib.db")
    folder.chmod(0o555)
    try:
        lib, refs = _loaded(path)
        assert len(refs) == 400
        lib.close()
    finally:
        folder.chmod(0o755)
    assert not (folder / "lib.db.index").exists()
    assert list((tmp_path / "cache").rglob("stamp.json"))


def test_a_damaged_index_is_an_error_naming_it_and_a_deleted_one_is_rebuilt(tmp_path, indexed):
    path = _library(tmp_path / "lib.db")
    ReferenceLibrary.open(path).references("dna")
    vectors = tmp_path / "lib.db.index" / "dna" / "vectors.npy"
    vectors.write_bytes(vectors.read_bytes()[:1000])
    with pytest.raises(LibraryError, match=r"lib\.db\.index.*damaged.*delete the folder"):
        ReferenceLibrary.open(path).references("dna")
    shutil.rmtree(tmp_path / "lib.db.index")
    assert len(ReferenceLibrary.open(path).references("dna")) == 400


def test_the_index_a_build_makes_for_its_temp_file_follows_the_library_into_place(tmp_path, indexed):
    from engine.build import library_output

    out = tmp_path / "lib.db"
    with library_output(out) as lib:
        lib.add(_records(300), stand_in_encoder())
        assert len(lib.references("dna")) == 300  # as calibration reads it: writes the temp file's index
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib.db", "lib.db.index"]
    assert len(ReferenceLibrary.open(out).references("dna")) == 300

    with pytest.raises(RuntimeError), library_output(out, add=True) as lib:
        lib.add(_records(50, prefix="S"), stand_in_encoder())
        lib.references("dna")
        raise RuntimeError("the build fails after its calibration read the columns")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib.db", "lib.db.index"]  # no temp index left
    assert len(ReferenceLibrary.open(out).references("dna")) == 300


def _counted(lib, modality="dna"):
    return [int(v) for v in lib.db.execute("SELECT count(*), coalesce(max(id), 0) FROM refs WHERE modality = ?",
                                           [modality]).fetchone()]


def test_the_stamp_uses_the_totals_the_last_add_stored_and_counts_when_another_writer_changed_the_library(tmp_path):
    path = tmp_path / "lib.db"
    lib = ReferenceLibrary.create(path)
    lib.add(_records(120), stand_in_encoder())
    lib.add(_records(50, seed=1), stand_in_encoder())  # the same ids R0..R49: replaced, not added
    lib.add(_records(30, prefix="S"), stand_in_encoder())
    stamp = lib.index_stamp("dna")
    assert [stamp["count"], stamp["max_id"]] == _counted(lib) and stamp["count"] == 150
    stored = json.loads(lib.meta["totals.dna"])
    assert stored["count"] == 150 and stored["generation"] == lib.meta["generation"]
    # a writer that changes the rows and the generation but not the totals (an older version):
    lib.db.execute("DELETE FROM refs WHERE record_id LIKE 'S%'")
    lib.set_meta({"generation": "another"})
    stamp = lib.index_stamp("dna")
    assert [stamp["count"], stamp["max_id"]] == _counted(lib) and stamp["count"] == 120
    lib.close()


def test_opening_a_large_library_reads_its_index_files_ahead(tmp_path, indexed, monkeypatch):
    import engine.readahead

    from engine.ann_index import CODER_FILE, shard_file

    path = _library(tmp_path / "lib.db")
    monkeypatch.setattr(engine.library, "ANN_MIN_REFERENCES", 100)
    lib = ReferenceLibrary.open_writable(path)
    assert lib.build_search_index("dna")
    lib.close()
    read: list = []
    monkeypatch.setattr(engine.readahead, "_read_ahead", lambda paths: read.extend(paths))
    lib, refs = _loaded(path)
    names = [p.name for p in read]
    assert names[0] == shard_file(0) and CODER_FILE not in names and "vectors.npy" in names and names[-1] == "lib.db"
    assert all(p.parent == tmp_path / "lib.db.index" / "dna" for p in read[:-1])
    lib.close()


def test_reading_ahead_fills_nothing_wrong_and_skips_what_is_missing(tmp_path):
    from engine.readahead import read_ahead

    data = tmp_path / "a.bin"
    data.write_bytes(os.urandom(3 * 2**20))
    thread = read_ahead([tmp_path / "missing.npy", data, tmp_path])  # a folder, too: unreadable as a file
    thread.join(10)
    assert not thread.is_alive() and thread.daemon
    assert len(data.read_bytes()) == 3 * 2**20
