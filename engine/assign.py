"""Open-world taxonomy calls from a query's nearest references.

For each rank the call is a similarity-weighted vote among the top candidates, kept
consistent down the ranks (a genus is voted among the references of the called family).
Two things are calibrated on the library itself (``calibrate``), never hand-picked:

* a presence threshold per rank: the top score below which the query's taxon at that
  rank is more likely absent from the library than present. It is set where
  leave-one-out ("present": drop the record itself, or its species for the genus rank...)
  and leave-taxon-out ("absent": drop the whole taxon) scores are best separated. A query
  whose top score falls under the species threshold is flagged ``novel``; the coarsest
  such rank is its ``novel_rank``, and ranks above it are still called.
* a confidence per rank: a logistic model of P(call correct | top score, vote share),
  fitted on the same simulated queries (half with their species present, half absent).

The score is the alignment identity when the library keeps sequences (re-ranking the
embedding candidates, like BOLD's identity %), else the embedding cosine similarity;
each has its own calibration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from engine.records import RANKS, Call, RankCall, Taxonomy

NOVELTY_RANKS = ("species", "genus", "family", "order")  # fine to coarse
# Vote weights fall by e for each `temperature` of score below the best candidate.
TEMPERATURE = {"identity": 0.01, "similarity": 0.02}
DEFAULT_MIN_CONFIDENCE = 0.5


@dataclass
class Candidates:
    """A query's top references, best first."""

    taxonomy: Sequence[Taxonomy]
    scores: np.ndarray  # identity or cosine similarity, best first
    score_kind: str  # "identity" | "similarity"


def vote(c: Candidates) -> dict[str, tuple[str, float]]:
    """Rank -> (winning name, its share of the vote), consistent down the ranks."""
    if len(c.scores) == 0:
        return {}
    w = np.exp((np.asarray(c.scores, dtype=np.float64) - c.scores[0]) / TEMPERATURE[c.score_kind])
    keep = np.ones(len(w), dtype=bool)
    out: dict[str, tuple[str, float]] = {}
    for rank in RANKS:
        names = [t.get(rank) for t in c.taxonomy]
        totals: dict[str, float] = {}
        for name, weight, k in zip(names, w, keep):
            if k and name:
                totals[name] = totals.get(name, 0.0) + weight
        if not totals:
            out[rank] = ("", 0.0)
            continue
        best = max(totals, key=totals.__getitem__)
        out[rank] = (best, totals[best] / float(w[keep].sum()))
        keep = keep & np.array([n == best for n in names])
    return out


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0


class Assigner:
    """Turns candidates into a Call with a calibration made by ``calibrate``."""

    def __init__(self, calibration: dict, min_confidence: float = DEFAULT_MIN_CONFIDENCE):
        self.calibration = calibration
        self.min_confidence = min_confidence

    def assign(self, c: Candidates) -> Call:
        cal = self.calibration[c.score_kind]
        if len(c.scores) == 0:
            return Call({r: RankCall(r, "", 0.0) for r in RANKS}, novel=True, novel_rank="order")
        top = float(c.scores[0])
        novel_rank = ""
        for rank in NOVELTY_RANKS:  # fine to coarse: keep the coarsest rank that looks new
            if top < cal["threshold"][rank]:
                novel_rank = rank
        votes = vote(c)
        ranks: dict[str, RankCall] = {}
        called_down_to = ""  # the finest rank of the unbroken chain order > family > genus > species
        for rank in RANKS:
            name, share = votes.get(rank, ("", 0.0))
            a, b, d = cal["logistic"][rank]
            conf = _sigmoid(a + b * top + d * share)
            absent = top < cal["threshold"][rank]
            if rank in NOVELTY_RANKS and novel_rank and RANKS.index(rank) >= RANKS.index(novel_rank):
                absent = True
            # a BIN may be called when the species is ambiguous (species sharing a BIN), never
            # without its genus; every other rank needs the rank above it
            parent = "genus" if rank == "bin_uri" else (RANKS[RANKS.index(rank) - 1] if rank != "order" else "")
            parent_ok = not parent or (called_down_to and RANKS.index(called_down_to) >= RANKS.index(parent))
            if parent_ok and not absent and name and conf >= self.min_confidence:
                ranks[rank] = RankCall(rank, name, conf)
                if rank != "bin_uri":
                    called_down_to = rank
            else:
                ranks[rank] = RankCall(rank, "", conf if name else 0.0)
        return Call(ranks, novel=bool(novel_rank), novel_rank=novel_rank)


# --------------------------------------------------------------------------- calibration
def _best_threshold(present: np.ndarray, absent: np.ndarray) -> tuple[float, float, float]:
    """Threshold minimising the balanced error; returns (threshold, false-absent, false-present)."""
    if len(present) == 0 or len(absent) == 0:
        return (float("-inf"), 0.0, 1.0)
    cands = np.unique(np.concatenate([present, absent]))
    p = np.sort(present)
    a = np.sort(absent)
    # a query is called "absent" when score < t
    false_absent = np.searchsorted(p, cands, side="left") / len(p)
    false_present = 1.0 - np.searchsorted(a, cands, side="left") / len(a)
    err = false_absent + false_present
    i = int(np.argmin(err))
    # every t in (cands[i-1], cands[j]] is as good, for the run i..j of equal error: take the
    # middle of that gap, the widest margin on both sides
    j = i
    while j + 1 < len(cands) and np.isclose(err[j + 1], err[i]):
        j += 1
    lower = cands[i - 1] if i > 0 else cands[i]
    return float((lower + cands[j]) / 2), float(false_absent[i]), float(false_present[i])


def _fit_logistic(X: np.ndarray, y: np.ndarray) -> list[float]:
    from sklearn.linear_model import LogisticRegression

    if y.min() == y.max():
        return [10.0 if y[0] else -10.0, 0.0, 0.0]
    m = LogisticRegression(C=10.0, max_iter=1000).fit(X, y)
    return [float(m.intercept_[0]), float(m.coef_[0][0]), float(m.coef_[0][1])]


def calibrate(
    matrix: np.ndarray,
    taxonomy: Sequence[Taxonomy],
    sequences: Sequence[str | None] | None = None,
    n_samples: int = 4000,
    k: int = 20,
    seed: int = 0,
    progress=None,
) -> dict:
    """Calibrate thresholds and confidences by leave-one-out / leave-taxon-out on a library.

    ``matrix`` holds the library's L2-normalised embeddings and ``taxonomy`` their labels;
    with ``sequences`` the identity mode is calibrated too.
    """
    from engine.align import identity
    from engine.progress import report

    n = len(taxonomy)
    rng = np.random.default_rng(seed)
    sample = rng.choice(n, size=min(n_samples, n), replace=False)
    codes = {}
    for rank in RANKS:
        names = [t.get(rank) for t in taxonomy]
        uniq = {name: i for i, name in enumerate(sorted(set(names)))}
        codes[rank] = np.array([uniq[x] for x in names], dtype=np.int64)
    kinds = ["similarity"] + (["identity"] if sequences is not None and any(sequences) else [])
    # scenario -> which records are removed from the library for the simulated query
    scenarios = {
        "self": None, "species": "species", "genus": "genus", "family": "family",
        "order": "order", "bin_uri": "bin_uri",
    }
    top_scores = {kind: {s: np.full(len(sample), np.nan) for s in scenarios} for kind in kinds}
    vote_rows = {kind: [] for kind in kinds}
    chunk = 256
    for start in range(0, len(sample), chunk):
        rows = sample[start : start + chunk]
        sims = matrix[rows] @ matrix.T
        sims[np.arange(len(rows)), rows] = -np.inf
        for scen, rank in scenarios.items():
            s = sims.copy()
            if rank is not None:
                s[codes[rank][rows][:, None] == codes[rank][None, :]] = -np.inf
            top = np.argpartition(-s, k, axis=1)[:, :k]
            for j, i in enumerate(rows):
                cand = top[j][np.argsort(-s[j, top[j]])]
                cand = cand[np.isfinite(s[j, cand])]
                if len(cand) == 0:
                    continue
                for kind in kinds:
                    if kind == "identity":
                        scores = np.array([identity(sequences[i], sequences[c]) if sequences[i] and sequences[c]
                                           else 0.0 for c in cand])
                        order = np.argsort(-scores, kind="stable")
                        cand_k, scores = cand[order], scores[order]
                    else:
                        cand_k, scores = cand, s[j, cand]
                    top_scores[kind][scen][start + j] = scores[0]
                    if scen in ("self", "species"):
                        cands = Candidates([taxonomy[c] for c in cand_k], scores, kind)
                        votes = vote(cands)
                        truth = taxonomy[i]
                        vote_rows[kind].append(
                            [(float(scores[0]), votes[r][1], float(votes[r][0] == truth.get(r))) for r in RANKS]
                        )
        report(progress, min(start + chunk, len(sample)), len(sample), "calibrating")

    # which sampled records can be a "present" case at each rank
    def has_other(rank: str, finer: str | None) -> np.ndarray:
        """Records whose taxon at `rank` keeps members after removing `finer` (or self)."""
        c = codes[rank][sample]
        if finer is None:
            counts = np.bincount(codes[rank], minlength=c.max() + 1)
            return counts[c] >= 2
        pairs = np.unique(np.stack([codes[rank], codes[finer]], axis=1), axis=0)
        n_finer = np.bincount(pairs[:, 0], minlength=c.max() + 1)
        return n_finer[c] >= 2

    present_scenario = {"species": "self", "genus": "species", "family": "genus", "order": "family",
                        "bin_uri": "self"}
    finer = {"species": None, "genus": "species", "family": "genus", "order": "family", "bin_uri": None}
    out: dict = {"n_samples": int(len(sample)), "k": k, "n_references": n}
    for kind in kinds:
        thresholds, rates = {}, {}
        for rank in ("species", "genus", "family", "order", "bin_uri"):
            ok = has_other(rank, finer[rank])
            present = top_scores[kind][present_scenario[rank]][ok]
            absent = top_scores[kind][rank]
            present, absent = present[np.isfinite(present)], absent[np.isfinite(absent)]
            t, fa, fp = _best_threshold(present, absent)
            thresholds[rank] = t
            rates[rank] = {"false_novel": fa, "missed_novel": fp, "n_present": int(len(present)),
                           "n_absent": int(len(absent))}
        v = np.array(vote_rows[kind])  # (samples, ranks, 3)
        logistic = {}
        for r_i, rank in enumerate(RANKS):
            logistic[rank] = _fit_logistic(v[:, r_i, :2], v[:, r_i, 2].astype(int))
        out[kind] = {"threshold": thresholds, "rates": rates, "logistic": logistic}
    return out
