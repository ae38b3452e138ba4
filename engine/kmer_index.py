"""Shared-k-mer search over a library's sequences: alignment mode's second source of candidates.

The embedding's shortlist holds a query's own species well, but for a species the library
lacks, its closest relatives by alignment are often not in it (the encoder is trained to
separate species, not to keep how far apart they are). On the DNA benchmark's held-out
species the best-identity reference among the 50 embedding candidates has the query's genus
for 74.0 % of records; among the 50 references sharing the most 8-mers with the query,
85.9 % (BLAST's top hit: 84.8 %). So a query whose embedding candidates hold nothing at
``WIDEN_BELOW`` identity or more is searched again by shared 8-mers over the whole library,
and the new candidates are aligned too (``widen``).

Counting shared k-mers is one sparse product, query k-mer sets x (k-mer -> reference)
incidence: exact, ~1 ms a query against 34,000 references on 2 cores. The index keeps ~2 KB
a reference (65 MB for 34,000; built in 1.8 s, ~9 KB a reference at the peak), so it is built
only for libraries up to ``MAX_REFERENCES`` records. Building it took a large share of an
identify run's time, so it is built once per state of a library and kept in the user cache
(``cached``), stamped with that state and the k-mer settings: every later run opens it
memory-mapped.
"""
from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.models.dna_tokenizer import AMBIGUOUS, KmerTokenizer
from engine.progress import ProgressCallback, report

K = 8
WIDEN_BELOW = 0.97  # identity of the best embedding candidate under which a query is searched again
# Aligning as few candidates as the call needs (``after_first``): the FIRST_ALIGNED nearest by embedding
# are aligned first; a query whose best of them reaches CLEAR_IDENTITY with every other species at least
# CLEAR_GAP below it is settled (at the identity vote's temperature, 0.002-0.005, a candidate CLEAR_GAP
# below the top weighs e^-4..e^-10 of it), one whose best stays under WIDEN_BELOW goes to the k-mer
# search straight away (its embedding candidates are the poorer source, see the module doc), and only
# the rest get all of their embedding candidates aligned.
FIRST_ALIGNED = 10
CLEAR_IDENTITY = 0.99
CLEAR_GAP = 0.02
EVIDENCE_SPECIES = 3  # a settled query still aligns the nearest record of this many species (BOLD-style evidence)
MAX_REFERENCES = 200_000
STORE_FORMAT = "1"  # of a saved index (KmerIndex.save)
# A library larger than MAX_REFERENCES has no k-mer index: a query it would search is given this many
# embedding candidates instead, all aligned. Of the lengths measured on the DNA benchmark's held-out
# species (docs/benchmarks.md, "DNA identification: targets and analysis"), 200-400 came within two points
# of the k-mer index's genus share, where the default 50 fell five short and 1,000 fell back (more
# distant look-alikes win the identity vote).
WIDE_SHORTLIST = 200
# k-mers held by more than this share of the references are not counted (if also held by more
# than COMMON_MIN_REFERENCES): on the benchmark library's own leave-species-out queries, the
# best-identity one of 50 candidates had the right genus for 65.2 % of records with every
# k-mer counted, 66.5 % without those in > 20 % of references (64.3 % at 10 %, 66.3 % at 25 %,
# 66.5 % at 35 %), and the search is 3-4x faster: the commonest k-mers say little about
# relatedness and account for most of the counting.
COMMON_SHARE = 0.2
COMMON_MIN_REFERENCES = 100
# the DNA model's tokenizer reads the k-mers (ids 2 + base-4 index; 1 = ambiguous, 0 = padding),
# without its length cut: a reference is indexed whole
_TOKENIZER = KmerTokenizer(k=K, max_len=1 << 30)


def _kmer_pairs(sequences: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """(sequence index, k-mer as an integer < 4**K) of every k-mer of every sequence, skipping
    k-mers with an ambiguous base."""
    rows, _, ids = _TOKENIZER.encode_flat([(s or "").upper() for s in sequences])
    valid = ids > AMBIGUOUS
    return rows[valid], ids[valid] - 2


def _incidence(sequences: Sequence[str | None]):
    """(sequences, 4**K) sparse matrix, 1 where a sequence has a k-mer.

    Built row-major straight from the sorted distinct (sequence, k-mer) keys, without SciPy's
    coordinate-format detour (which sorts and copies every repeated k-mer).
    """
    from scipy import sparse

    rows, kmers = _kmer_pairs(sequences)
    keys = np.sort(rows.astype(np.int64) * 4 ** K + kmers)
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]  # distinct (np.unique is ~100x slower here)
    rows, kmers = (keys >> (2 * K)).astype(np.int64), (keys & (4 ** K - 1)).astype(np.int32)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(sequences)))])
    return sparse.csr_matrix((np.ones(len(kmers), np.int16), kmers, indptr), shape=(len(sequences), 4 ** K))


class KmerIndex:
    """Which references hold each k-mer; ``shared`` counts, per query, the k-mers it shares with each."""

    BUILD_CHUNK = 5_000  # references read at once: bounds the build's working memory to ~150 MB

    def __init__(self, sequences: Sequence[str | None]):
        from scipy import sparse

        self.n_references = len(sequences)
        parts = [_incidence(sequences[s: s + self.BUILD_CHUNK]) for s in range(0, len(sequences), self.BUILD_CHUNK)]
        held_by = sum((np.bincount(p.indices, minlength=4 ** K) for p in parts), np.zeros(4 ** K, np.int64))
        common = held_by > max(COMMON_SHARE * len(sequences), COMMON_MIN_REFERENCES)
        for part in parts:  # the common k-mers' entries dropped, chunk by chunk
            part.data[common[part.indices]] = 0
            part.eliminate_zeros()
        by_reference = sparse.vstack(parts, format="csr") if parts else _incidence([])
        self._by_kmer = by_reference.T.tocsr()  # (4**K, references): the product's right-hand side
        self.common_kmers = int(common.sum())

    # -- kept between runs ------------------------------------------------------------------
    @staticmethod
    def _stamp(state: dict) -> dict:
        return {"format": STORE_FORMAT, "k": K, "common_share": COMMON_SHARE,
                "common_min_references": COMMON_MIN_REFERENCES, "state": state}

    def save(self, folder: Path, state: dict) -> None:
        """Write the index to ``folder`` for the library state ``state`` (any JSON-able stamp of
        it), under a temp name put in place at the end; another process's copy in place wins."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            # SciPy's own index dtype (int32 up to 2**31 entries), so opening copies neither array
            np.save(tmp / "indptr.npy", self._by_kmer.indptr)
            np.save(tmp / "indices.npy", self._by_kmer.indices)
            stamp = {**self._stamp(state), "n_references": self.n_references, "common_kmers": self.common_kmers}
            (tmp / "stamp.json").write_text(json.dumps(stamp))  # last: a folder without it is never read
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path, state: dict) -> "KmerIndex | None":
        """The index saved in ``folder`` for exactly ``state`` and these k-mer settings, opened
        memory-mapped; None when absent, stale or unreadable (it is then built again)."""
        from scipy import sparse

        try:
            stamp = json.loads((folder / "stamp.json").read_text())
            if {k: stamp.get(k) for k in cls._stamp(state)} != cls._stamp(state):
                return None
            n = int(stamp["n_references"])
            indptr = np.load(folder / "indptr.npy", mmap_mode="r")
            indices = np.load(folder / "indices.npy", mmap_mode="r")
            if (indptr.shape != (4 ** K + 1,) or indptr.dtype != indices.dtype or indices.dtype not in (np.int32, np.int64)
                    or int(indptr[-1]) != len(indices) or (len(indices) and int(indices.max()) >= n)):
                return None
            self = cls.__new__(cls)
            self.n_references, self.common_kmers = n, int(stamp["common_kmers"])
            self._by_kmer = sparse.csr_matrix((np.ones(len(indices), np.int16), indices, indptr),
                                              shape=(4 ** K, n), copy=False)
            return self
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @classmethod
    def cached(cls, sequences: Sequence[str | None], folder: Path, state: dict) -> "KmerIndex":
        """The index of ``sequences`` (a library in state ``state``): opened from ``folder``, or
        built and saved there. A folder that cannot be written costs only the time to build."""
        index = cls.load(folder, state)
        if index is not None and index.n_references == len(sequences):
            return index
        index = cls(sequences)
        try:
            index.save(folder, state)
        except OSError:
            pass
        return index

    def shared(self, queries: Sequence[str], threads: int = 0, progress: ProgressCallback = None):
        """(len(queries), references) sparse matrix of shared distinct k-mer counts.

        Chunks run on ``threads`` threads (0: every core); SciPy's product releases the GIL.
        """
        from scipy import sparse

        chunk = 256
        starts = list(range(0, len(queries), chunk))
        parts = [None] * len(starts)
        pool = ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1)
        try:
            futures = [pool.submit(lambda s: _incidence(queries[s: s + chunk]) @ self._by_kmer, s) for s in starts]
            for n, future in enumerate(futures):
                parts[n] = future.result()
                report(progress, min(starts[n] + chunk, len(queries)), len(queries), "searching shared k-mers")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # on cancel (raised by report), drop the rest
        if not parts:
            return sparse.csr_matrix((0, self.n_references), dtype=np.int16)
        return sparse.vstack(parts, format="csr")


def top_shared(shared, row: int, n: int, excluded: np.ndarray | None = None) -> np.ndarray:
    """Positions of the ``n`` references sharing the most k-mers with query ``row`` of a
    ``KmerIndex.shared`` matrix, most first; ``excluded`` (a boolean mask over references)
    are left out."""
    lo, hi = shared.indptr[row], shared.indptr[row + 1]
    refs, counts = shared.indices[lo:hi], shared.data[lo:hi]
    if excluded is not None:
        keep = ~excluded[refs]
        refs, counts = refs[keep], counts[keep]
    if len(refs) > n:
        best = np.argpartition(-counts, n)[:n]
        refs, counts = refs[best], counts[best]
    return refs[np.argsort(-counts, kind="stable")].astype(np.int64)


def after_first(identities: Sequence[float], species: Sequence[str], rest_species: Sequence[str]) -> list[int] | None:
    """Which of a query's remaining embedding candidates to align, given the identities of its
    first FIRST_ALIGNED ones (``species``: theirs; ``rest_species``: those of the remaining ones,
    nearest first): positions into the remaining ones, or None when the query is to be widened by
    the k-mer search instead. Settled queries (see FIRST_ALIGNED) align only the nearest record
    of each further species needed to show EVIDENCE_SPECIES species."""
    if len(identities) == 0:
        return list(range(len(rest_species)))
    best = int(np.argmax(identities))
    top = float(identities[best])
    if top < WIDEN_BELOW:
        return None
    others = [x for x, sp in zip(identities, species) if sp != species[best] or not sp]
    if top >= CLEAR_IDENTITY and (not others or top - max(others) >= CLEAR_GAP):
        seen, extra = {sp for sp in species if sp}, []
        for n, sp in enumerate(rest_species):
            if len(seen) >= EVIDENCE_SPECIES:
                break
            if sp and sp not in seen:
                seen.add(sp)
                extra.append(n)
        return extra
    return list(range(len(rest_species)))


def widen(candidates: np.ndarray, identities: np.ndarray, extra: np.ndarray,
          extra_identities: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best by identity of the union of two candidate lists (the first list wins ties
    and duplicates), best first."""
    new = ~np.isin(extra, candidates)
    merged = np.concatenate([candidates, extra[new]])
    scores = np.concatenate([identities, extra_identities[new]])
    order = np.argsort(-scores, kind="stable")[:k]
    return merged[order], scores[order]
