"""The DNA CNN's overlapping k-mer tokens and the QC's stop-codon count, against slow references."""
import numpy as np
from Bio.Seq import Seq

from engine.models.dna_tokenizer import AMBIGUOUS, PAD, KmerTokenizer
from engine.qc import count_stops


def test_kmer_ids_are_base4_indices_plus_two_and_ambiguous_kmers_share_one_id():
    tok = KmerTokenizer(k=3, max_len=720)
    # ACG = 0*16 + 1*4 + 2, CGT = 27, GTT = 47, TTT = 63, TTA = 60; ids are those + 2
    assert tok.encode_one("ACGTTTA").tolist() == [8, 29, 49, 65, 62]
    assert tok.encode_one("ACNGTA").tolist() == [AMBIGUOUS, AMBIGUOUS, AMBIGUOUS, 2 + 2 * 16 + 3 * 4 + 0]
    assert tok.encode_one("AC").tolist() == [AMBIGUOUS]  # shorter than k


def test_kmer_tokens_match_a_direct_reading_of_each_window():
    rng = np.random.default_rng(3)
    tok = KmerTokenizer(k=6, max_len=100)
    seq = "".join(rng.choice(list("ACGTN"), p=[0.24, 0.24, 0.24, 0.24, 0.04], size=130))
    expected = []
    for i in range(100 - 6 + 1):  # only the first max_len bases are read
        kmer = seq[i: i + 6]
        expected.append(AMBIGUOUS if "N" in kmer else 2 + int(kmer.translate(str.maketrans("ACGT", "0123")), 4))
    assert tok.encode_one(seq).tolist() == expected
    batch = tok.encode_batch([seq, seq[:20]])
    assert batch.shape == (2, 95) and batch[1, 15:].tolist() == [PAD] * 80 and batch[1, :15].tolist() == expected[:15]


def test_stop_counts_per_frame_match_biopython_translation_with_table_5():
    rng = np.random.default_rng(7)
    for _ in range(50):
        seq = "".join(rng.choice(list("ACGTN"), p=[0.245, 0.245, 0.245, 0.245, 0.02], size=int(rng.integers(3, 200))))
        expected = []
        for frame in range(3):
            codons = [seq[i: i + 3] for i in range(frame, len(seq) - 2, 3)]
            expected.append(sum(1 for c in codons if "N" not in c and str(Seq(c).translate(table=5)) == "*"))
        assert count_stops(seq) == expected, seq
