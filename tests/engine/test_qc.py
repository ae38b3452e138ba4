from engine.qc import check_barcode, count_stops, reverse_complement
from tests.synthetic import make_barcodes

SEQ = make_barcodes(genera=1, species_per_genus=1, records_per_species=1)[0].sequence


def test_clean_barcode_passes_without_flags():
    qc = check_barcode(SEQ)
    assert qc.ok and qc.flags == [] and qc.sequence == SEQ and qc.length == len(SEQ)


def test_gaps_case_and_end_ns_are_cleaned():
    raw = "nnn" + SEQ[:300].lower() + "--" + SEQ[300:] + "NNNN"
    qc = check_barcode(raw)
    assert qc.ok and qc.sequence == SEQ
    assert set(qc.flags) == {"gaps_removed", "ends_trimmed"}


def test_reverse_complement_is_detected_and_fixed():
    qc = check_barcode(reverse_complement(SEQ))
    assert qc.ok and qc.reverse_complemented and qc.sequence == SEQ
    assert "reverse_complemented" in qc.flags


def test_stop_codon_in_every_frame_flags_a_likely_numt():
    # TAA/TAG in all three frames of the forward strand (the best frame, frame 0, gets two)
    broken = SEQ[:300] + "TAAATAGAATAG" + SEQ[300:]
    assert min(count_stops(broken)) == 2
    qc = check_barcode(broken)
    assert qc.ok and "stop_codons" in qc.flags and qc.stop_codons == 2


def test_count_stops_uses_table_5():
    # TGA is tryptophan in the invertebrate mitochondrial code; TAA and TAG are stops
    assert count_stops("TGATGATGA")[0] == 0
    assert count_stops("TAATAGTGA")[0] == 2


def test_protein_input_is_rejected_with_a_reason():
    qc = check_barcode("MKVLEEFQLIPRST" * 20)
    assert not qc.ok and "not a DNA sequence" in qc.error and "protein" in qc.error


def test_short_and_ambiguous_inputs():
    assert "too short" in check_barcode("ACGT" * 10).error
    assert "mostly ambiguous" in check_barcode("ACGTNNNNNNNN" * 30).error
    qc = check_barcode(SEQ[:400])
    assert qc.ok and "short" in qc.flags
    assert check_barcode("").error == "empty sequence"


def test_a_sequence_with_no_reading_frame_is_flagged():
    import numpy as np

    # random bases with an insect COI's AT-rich composition: stops everywhere, in both strands
    rng = np.random.default_rng(4)
    for _ in range(5):
        qc = check_barcode("".join(rng.choice(list("ATCG"), p=[0.3, 0.4, 0.15, 0.15], size=658)))
        assert qc.ok and qc.stop_codons >= 5 and {"stop_codons", "no_reading_frame"} <= set(qc.flags)
    # a pseudogene-like barcode with a few stops is still identified, flagged
    few = SEQ[:300] + "TAA" + SEQ[303:330] + "TAG" + SEQ[333:]
    qc = check_barcode(few)
    assert qc.ok and qc.stop_codons == 2 and "stop_codons" in qc.flags and "no_reading_frame" not in qc.flags


def test_a_sequence_longer_than_any_barcode_is_refused_by_qc():
    from engine.qc import MAX_SEQUENCE_LENGTH, overlong_as_errors
    from engine.records import Barcode, RecordError

    assembly = "ACGTTGCA" * 600_000  # 4.8 Mbp
    qc = check_barcode(assembly)
    assert not qc.ok and qc.sequence == "" and qc.length == len(assembly)
    assert qc.error == (f"4,800,000 bp: longer than any COI barcode (max {MAX_SEQUENCE_LENGTH:,} bp); "
                        "is this a genome assembly or several sequences joined?")
    # the limit counts bases, not the line breaks and spaces of a wrapped record
    wrapped = "\n".join(SEQ[i:i + 60] for i in range(0, len(SEQ), 60)) + " " * (MAX_SEQUENCE_LENGTH + 1)
    assert check_barcode(wrapped).ok
    assert check_barcode(SEQ, max_length=len(SEQ) - 1).error.startswith(f"{len(SEQ)} bp: longer than any COI")
    # in a stream of records, an overlong one is an error record as it passes (its sequence dropped)
    records = [Barcode("a", SEQ, "f.fasta"), Barcode("big", assembly, "f.fasta"), RecordError("x", "f.fasta", "bad")]
    out = list(overlong_as_errors(iter(records)))
    assert out[0] is records[0] and out[2] is records[2]
    assert isinstance(out[1], RecordError) and out[1].specimen_id == "big" and out[1].message == qc.error


def test_count_stops_agrees_with_biopython_translation_in_every_frame_with_ambiguous_bases():
    import random

    from Bio.Seq import Seq

    rng = random.Random(5)
    for _ in range(200):
        seq = "".join(rng.choice("ACGTACGTACGTN") for _ in range(rng.randrange(0, 80)))
        expect = []
        for frame in range(3):
            codons = [seq[i: i + 3] for i in range(frame, len(seq) - 2, 3)]
            expect.append(sum(1 for c in codons if "N" not in c and str(Seq(c).translate(table=5)) == "*"))
        assert count_stops(seq) == expect, seq
