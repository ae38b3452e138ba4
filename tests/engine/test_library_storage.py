"""Sequence storage in the reference library: compressed blocks, read lazily; schema-1 libraries still read."""
from __future__ import annotations

import json
import sqlite3
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.library import SEQUENCE_BLOCK, ReferenceLibrary, ReferenceRecord
from engine.records import Taxonomy

IUPAC = "ACGTRYSWKMBDHVN"
DIM = 8


def stand_in_encoder(sha: str = "0" * 64):
    """What ReferenceLibrary.add reads of an encoder: its identity (no model runs in these tests)."""
    return SimpleNamespace(pack=SimpleNamespace(name="stand-in", version="0"), precision="fp32",
                           model_sha256=sha, dim=DIM, modality="dna")


def records(sequences, prefix="R", species=lambda n: f"Genus species{n % 7}"):
    rng = np.random.default_rng(len(sequences))
    return [ReferenceRecord(f"{prefix}{n}", Taxonomy(order="O", family="F", genus="Genus", species=species(n)),
                            rng.normal(size=DIM), s) for n, s in enumerate(sequences)]


def stored(path, modality="dna") -> dict[str, str | None]:
    lib = ReferenceLibrary.open(path)
    try:
        refs = lib.references(modality)
        return dict(zip(refs.record_ids, refs.sequences))
    finally:
        lib.close()


# barcodes as QC leaves them: upper-case IUPAC letters, no gaps; N runs and every ambiguity code
barcode = st.one_of(
    st.text(alphabet=IUPAC, min_size=0, max_size=10_000),
    st.lists(st.tuples(st.sampled_from(IUPAC), st.integers(1, 300)), max_size=40).map(
        lambda runs: "".join(c * n for c, n in runs)[:10_000]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(barcode, min_size=1, max_size=2 * SEQUENCE_BLOCK + 3))
def test_every_sequence_reads_back_exactly(tmp_path_factory, sequences):
    path = tmp_path_factory.mktemp("lib") / "lib.db"
    lib = ReferenceLibrary.create(path)
    lib.add(records(sequences), stand_in_encoder())
    lib.close()
    assert stored(path) == {f"R{n}": s for n, s in enumerate(sequences)}


def test_every_iupac_code_lengths_and_n_runs_round_trip(tmp_path):
    sequences = ["", "A", "N" * 10_000, IUPAC, IUPAC.lower().upper() * 600, "ACGT" * 2500,
                 "NNNNACGTNNNNNNRYKM" + "ACGT" * 160 + "NNNN", *(c * 658 for c in IUPAC)]
    lib = ReferenceLibrary.create(tmp_path / "lib.db")
    lib.add(records(sequences), stand_in_encoder())
    lib.close()
    assert list(stored(tmp_path / "lib.db").values()) == sequences


def test_records_without_a_sequence_read_as_none(tmp_path):
    lib = ReferenceLibrary.create(tmp_path / "lib.db")
    lib.add(records(["ACGT", None, "GGCC"]), stand_in_encoder())
    assert lib.has_sequences
    lib.close()
    assert stored(tmp_path / "lib.db") == {"R0": "ACGT", "R1": None, "R2": "GGCC"}
    lib = ReferenceLibrary.create(tmp_path / "none.db")
    lib.add(records([None, None]), stand_in_encoder())
    assert not lib.has_sequences and not lib.references("dna").sequences.any()


def test_only_the_blocks_read_are_decoded_and_blocks_compress(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.choice(list("ACGT"), 658)
    sequences = []
    for n in range(10 * SEQUENCE_BLOCK):  # 10 species of near-identical barcodes
        s = base.copy()
        s[rng.integers(0, 658, 5)] = rng.choice(list("ACGT"), 5)
        s[(n % 10) * 60: (n % 10) * 60 + 40] = "A"
        sequences.append("".join(s))
    lib = ReferenceLibrary.create(tmp_path / "lib.db")
    lib.add(records(sequences, species=lambda n: f"Genus species{n % 10}"), stand_in_encoder())
    packed = sum(len(r[0]) for r in lib.db.execute("SELECT data FROM seq_blocks"))
    assert packed < sum(map(len, sequences)) / 8  # similar barcodes sorted together: < 1 bit a base
    lib.close()
    lib = ReferenceLibrary.open(tmp_path / "lib.db")
    seqs = lib.references("dna").sequences
    assert seqs[5] == sequences[5] and len(seqs._cache) == 1
    assert seqs[-1] == sequences[-1] and len(seqs._cache) <= 2
    assert list(seqs) == sequences and len(seqs._cache) == 10


def test_replaced_records_leave_no_orphan_blocks(tmp_path):
    lib = ReferenceLibrary.create(tmp_path / "lib.db")
    lib.add(records(["ACGT"] * 3), stand_in_encoder())
    lib.add(records(["GGGG"] * 3), stand_in_encoder())  # the same ids again
    assert lib.db.execute("SELECT count(*) FROM seq_blocks").fetchone()[0] == 1
    lib.close()
    assert set(stored(tmp_path / "lib.db").values()) == {"GGGG"}


def make_schema1_library(path, sequences) -> None:
    """A library as schema 1 wrote it: plain-text sequences in refs.sequence, no seq_blocks."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute('CREATE TABLE refs (id INTEGER PRIMARY KEY, record_id TEXT NOT NULL, modality TEXT NOT NULL, '
                 '"order" TEXT, family TEXT, subfamily TEXT, genus TEXT, species TEXT, bin_uri TEXT, source TEXT, '
                 'sequence TEXT, embedding BLOB NOT NULL)')
    conn.execute("CREATE UNIQUE INDEX idx_refs_modality_record_id ON refs (modality, record_id)")
    enc = stand_in_encoder()
    model = {"name": enc.pack.name, "version": enc.pack.version, "precision": enc.precision,
             "sha256": enc.model_sha256, "dim": str(DIM)}
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [("schema_version", "1"), ("library_id", "x"),
                                                       ("name", "old"), ("model.dna", json.dumps(model))])
    conn.executemany("INSERT INTO refs (record_id, modality, species, sequence, embedding) VALUES (?, 'dna', ?, ?, ?)",
                     [(f"OLD{n}", "Genus species", s, np.ones(DIM, np.float16).tobytes())
                      for n, s in enumerate(sequences)])
    conn.commit()
    conn.close()


def test_schema1_libraries_read_and_extend(tmp_path):
    path = tmp_path / "old.db"
    make_schema1_library(path, ["ACGTN", None, "RYKM"])
    lib = ReferenceLibrary.open(path)
    assert lib.has_sequences and not lib.packs_sequences
    assert list(lib.references("dna").sequences) == ["ACGTN", None, "RYKM"]
    lib.close()
    lib = ReferenceLibrary.open_writable(path)
    lib.add(records(["GATTACA"], prefix="NEW"), stand_in_encoder())  # upgrades to schema 2
    assert lib.packs_sequences
    lib.close()
    assert stored(path) == {"OLD0": "ACGTN", "OLD1": None, "OLD2": "RYKM", "NEW0": "GATTACA"}


def test_a_newer_schema_is_refused_with_a_reason(tmp_path):
    from engine.errors import LibraryError

    path = tmp_path / "new.db"
    lib = ReferenceLibrary.create(path)
    lib._set_meta(schema_version="99")
    lib.close()
    with pytest.raises(LibraryError, match="schema 99 is not supported"):
        ReferenceLibrary.open(path)


def test_built_libraries_store_the_qc_cleaned_sequence(tmp_path, tiny_dna_pack, synthetic_split):
    """Gaps and end Ns are removed by QC before a sequence is stored; inner ambiguity codes are kept."""
    from engine.build import add_barcodes
    from engine.models.dna_encoder import DnaEncoder
    from engine.qc import check_barcode
    from engine.records import Barcode

    raw = []
    for n, rec in enumerate(synthetic_split[0][:6]):
        s = rec.sequence
        s = "NNN" + s[:30] + "---" + s[30:60] + "R" + s[61:300] + ".." + s[300:] + "NN"
        raw.append(Barcode(rec.specimen_id, s, "t.tsv", rec.taxonomy))
    lib = ReferenceLibrary.create(tmp_path / "lib.db")
    add_barcodes(lib, raw, DnaEncoder.from_path(tiny_dna_pack))
    lib.close()
    got = stored(tmp_path / "lib.db")
    for rec in raw:
        assert got[rec.specimen_id] == check_barcode(rec.sequence).sequence
        assert "-" not in got[rec.specimen_id] and "." not in got[rec.specimen_id] and "R" in got[rec.specimen_id]
