import gzip

import pytest

from engine.errors import InputFormatError
from engine.io import ReadStats, detect_barcode_format, read_barcodes, read_table
from engine.records import Barcode, RecordError
from tests.synthetic import make_barcodes, write_fasta, write_tsv


def test_fasta_ids_and_sequences(tmp_path):
    recs = make_barcodes(genera=1, species_per_genus=2, records_per_species=2)
    f = tmp_path / "x.fasta"
    write_fasta(f, recs)
    out = list(read_barcodes(f))
    assert [r.specimen_id for r in out] == [r.specimen_id for r in recs]
    assert out[1].sequence == recs[1].sequence
    assert detect_barcode_format(f) == "fasta"


def test_duplicate_fasta_id_is_an_error_row_not_a_crash(tmp_path):
    f = tmp_path / "dup.fa"
    f.write_text(">a\nACGT\n>a\nTTTT\n>b\nGGGG\n")
    out = list(read_barcodes(f))
    assert [type(r) for r in out] == [Barcode, RecordError, Barcode]
    assert "duplicate FASTA id 'a'" in out[1].message


def test_malformed_fasta_named_as_such(tmp_path):
    f = tmp_path / "bad.fasta"
    f.write_text("ACGTACGT\n>x\nACGT\n")
    with pytest.raises(InputFormatError, match="malformed FASTA"):
        list(read_barcodes(f))


@pytest.mark.parametrize("content,reason", [
    (b"", "empty"),
    (b"\x00\x01\x02binary", "binary"),
    (b"just one column\nfoo\n", "header row"),
])
def test_unreadable_files_say_why(tmp_path, content, reason):
    f = tmp_path / "in.tsv"
    f.write_bytes(content)
    with pytest.raises(InputFormatError, match=reason):
        detect_barcode_format(f)


def test_dialects_detected(tmp_path):
    five = tmp_path / "5m.tsv"
    five.write_text("processid\tdna_barcode\torder\nP1\tACGT\tDiptera\n")
    one = tmp_path / "1m.tsv"
    one.write_text("processid\tnucleotides\torder_name\tbin_uri\nP1\tACGT\tDiptera\tBOLD:A\n")
    bold = tmp_path / "bold.tsv.gz"
    with gzip.open(bold, "wt") as fh:
        fh.write("processid\tmarkercode\tnucleotides\tspecies_name\nP1\tCOI-5P\tACGT\tA b\nP2\tCYTB\tACGT\tA c\n")
    meta = tmp_path / "meta.csv"
    meta.write_text("processid,order,family\nP1,Diptera,Culicidae\n")
    assert detect_barcode_format(five) == "bioscan-5m"
    assert detect_barcode_format(one) == "bioscan-1m"
    assert detect_barcode_format(bold) == "bold"
    assert read_table(meta).dialect == "metadata"
    with pytest.raises(InputFormatError, match="no sequence column"):
        detect_barcode_format(meta)
    rec = list(read_barcodes(one))[0]
    assert rec.taxonomy.order == "Diptera" and rec.taxonomy.bin_uri == "BOLD:A"
    stats = ReadStats()
    bold_recs = list(read_barcodes(bold, stats))
    assert len(bold_recs) == 1 and isinstance(bold_recs[0], Barcode) and bold_recs[0].taxonomy.species == "A b"
    assert stats.skipped == {"CYTB": 1}  # another marker is skipped and counted, not an error row


def test_malformed_row_is_reported_with_its_line(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("processid,dna_barcode\nP1,ACGT\nP2,ACGT,extra\nP3,GGGG\n")
    out = list(read_barcodes(f))
    assert [type(r).__name__ for r in out] == ["Barcode", "RecordError", "Barcode"]
    assert "line 3" in out[1].message


def test_tsv_round_trip_with_taxonomy(tmp_path):
    recs = make_barcodes(genera=2, species_per_genus=1, records_per_species=2)
    f = tmp_path / "lib.tsv"
    write_tsv(f, recs)
    out = list(read_barcodes(f))
    assert [r.taxonomy for r in out] == [r.taxonomy for r in recs]


@pytest.mark.real_data
def test_shared_barcodes_read_completely(real_data):
    out = list(read_barcodes(real_data / "barcodes.tsv"))
    assert len(out) == 38963
    assert all(isinstance(r, Barcode) and r.taxonomy.species for r in out)
