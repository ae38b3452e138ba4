"""Alignment identity, one pair and many pairs on threads."""
import numpy as np
import pytest

from engine.align import identity, pair_identities
from engine.progress import Cancelled


def test_identity_is_one_minus_edits_over_the_shorter_length_with_n_matching_anything():
    a = "ACGTACGTAC" * 20
    assert identity(a, a) == 1.0
    assert identity(a, "GG" + a + "TT") == 1.0  # end gaps of the longer sequence are free
    b = a[:100] + ("A" if a[100] != "A" else "C") + a[101:]
    assert identity(a, b) == pytest.approx(1 - 1 / 200)
    assert identity(a, a[:50] + "N" + a[51:]) == 1.0
    assert identity(a, "") == 0.0


def test_pair_identities_equal_one_by_one_in_order_across_chunks_and_report_progress():
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), size=int(rng.integers(30, 80)))) for _ in range(120)]
    pairs = [(seqs[i], seqs[j]) for i, j in rng.integers(0, 120, size=(9000, 2))]  # > two chunks of 4096
    seen = []
    got = pair_identities(pairs, threads=2, progress=lambda done, total, msg: seen.append((done, total)))
    assert got.tolist() == [identity(a, b) for a, b in pairs]
    assert seen[-1] == (9000, 9000) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_pair_identities_stop_when_cancelled():
    def cancel(done, total, msg):
        raise Cancelled()

    with pytest.raises(Cancelled):
        pair_identities([("ACGT" * 30, "ACGA" * 30)] * 5000, progress=cancel)


def test_a_cancel_drops_the_chunks_not_yet_started(monkeypatch):
    import engine.align

    aligned = []
    # ~3 us a call (real alignments take ~30 us): 50 chunks are ~0.3 s of work on two threads
    monkeypatch.setattr(engine.align, "identity", lambda a, b: aligned.append(sum(range(200))) or 1.0)

    def cancel(done, total, msg):
        raise Cancelled()

    with pytest.raises(Cancelled):
        pair_identities([("ACGT", "ACGT")] * (50 * 4096), threads=2, progress=cancel)
    # the first chunk, plus at most the chunks queued ahead (two per thread), however the threads ran
    assert 4096 <= len(aligned) <= 2 * 2 * 4096
