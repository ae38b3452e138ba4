"""Open-world taxonomy calls from a query's nearest references.

For each rank the call is a score-weighted vote among the top candidates, kept consistent
down the ranks (a genus is voted among the references of the called family). Everything
that decides a call is calibrated on the library itself (``calibrate``), by simulating
queries with leave-one-out ("present": the record itself removed) and leave-taxon-out
("absent": its whole species, or BIN, removed):

* ``novelty``: a presence score ``w_top * top score + w_gap * species gap`` (the gap: top
  score minus the best score of another species among the candidates) and the value below
  which the query's species is more likely absent from the library than present; the query
  is then flagged ``novel`` and its species left empty. Weights and threshold are where
  present and species-absent queries are best separated (balanced error; ``_fit_novelty``
  searches the direction), but never where more than ``max_false_novel`` of the present
  queries would be flagged. The gap carries what the top score alone misses: a query of a species
  the library lacks often sits between two congeners at similar scores, while one of a
  species it holds stands out from the other species. Fitted for embedding similarity only:
  on the DNA benchmark it flags 89.8 % of held-out species' records instead of 87.2 %, at
  1.25 % false flags instead of 1.42 %; with alignment identity the cut it calibrates lets
  1.6 % false flags through (over the cap), so identity keeps ``threshold.species``, the
  same cut on the top score alone. Photos and libraries calibrated before ``novelty``
  existed use it too; ``threshold.bin_uri`` likewise for BINs.
* ``temperature``: how fast vote weights fall with score; the value that makes the
  simulated species-absent queries' genus votes most accurate.
* ``logistic``: per rank, P(call correct | top score, vote share), fitted on the simulated
  queries (half with their species present, half absent). A rank is called only when this
  confidence reaches ``min_confidence`` and the rank above it was called.

A library of fewer than ``MIN_CALIBRATION_SPECIES`` species cannot simulate a missing species:
leaving the only species out leaves nothing to match, and with two, the one left has no
other species to measure the gap to. Calibration then says so (``n_species``) and novelty
falls back to ``SMALL_LIBRARY_RULE``: a rank is called only when the top match is at least
that close, and the query is novel from the coarsest rank it fails (without the fallback
nothing was ever novel: a Hemiptera barcode came back as the one spider species, confidently).

The score is the alignment identity when the library keeps sequences (re-ranking the
embedding candidates, widened by a shared-k-mer search where none is close (engine.kmer_index),
like BOLD's identity %), else the embedding cosine similarity;
each has its own calibration. With similarity alone, the genus is the candidates' genus
whose prototype (``GenusPrototypes``) lies closest to the query, not the one most of the
nearest records belong to: the encoder is trained with a genus-level margin, so a species
absent from the library still lands nearest its genus's centre more often than nearest
one of its members.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from operator import attrgetter
from typing import Sequence

import numpy as np

from engine.records import RANKS, Call, RankCall, Taxonomy
from engine.search import gather_rows, read_rows

LINEAGE = ("order", "family", "genus", "species")
DEFAULT_MIN_CONFIDENCE = 0.5
MAX_FALSE_NOVEL = 0.015
PROTOTYPE_TEMPERATURE = 0.02  # cosine; how sharply the prototype nearest the query wins its genus call
TEMPERATURES = {"identity": (0.001, 0.002, 0.005, 0.01, 0.02), "similarity": (0.002, 0.005, 0.01, 0.02, 0.05)}
MIN_CALIBRATION_SPECIES = 3  # see the module doc: the fewest with which a species left out has two to choose from
# The top score a query needs for each rank to be called in a library too small to calibrate: the 95th
# percentile (rounded up) of a barcode's best score against records of another taxon at that rank, measured
# on real barcodes (identity) and with the bundled DNA model (similarity): benchmarks/small_library_rule.py,
# docs/benchmarks.md. (The similarity rule fits the bundled model; with sequences, identity is used instead.)
SMALL_LIBRARY_RULE = {
    "identity": {"order": 0.87, "family": 0.92, "genus": 0.94, "species": 0.97},
    "similarity": {"order": 0.45, "family": 0.51, "genus": 0.63, "species": 0.87},
}


@dataclass
class Candidates:
    """A query's top references, best first."""

    taxonomy: Sequence[Taxonomy]
    scores: np.ndarray  # identity or cosine similarity, best first
    score_kind: str  # "identity" | "similarity"
    genus_scores: dict[str, float] | None = None  # genus -> cosine to its prototype (GenusPrototypes)


class GenusPrototypes:
    """Each genus's direction in the embedding space: the normalised sum of its species'
    normalised mean embeddings (so a genus is not dominated by its best-sampled species)."""

    # float32 sums, and no table of the species' unit vectors beside them: a library of 5 M
    # references holds ~500,000 species, whose float64 sums and units took 2 GB and more
    def __init__(self, matrix: np.ndarray, taxonomy: Sequence[Taxonomy]):
        self.species_code = _codes(taxonomy, "species")
        n_species = int(self.species_code.max()) + 1 if len(taxonomy) else 0
        self.species_sum = _sum_rows_by_code(matrix, self.species_code, n_species)
        self.species_norm = np.linalg.norm(self.species_sum, axis=1).clip(1e-12)
        species, first = np.unique(self.species_code, return_index=True)  # a species' genus: its first record's
        genus_of = {int(sp): taxonomy[int(i)].genus for sp, i in zip(species.tolist(), first.tolist())}
        self.genera = sorted({g for g in genus_of.values() if g})
        self.genus_index = {g: i for i, g in enumerate(self.genera)}
        self.species_genus = np.array([self.genus_index.get(genus_of[s], -1) for s in range(n_species)], dtype=np.int64)
        self.genus_sum = np.zeros((len(self.genera), matrix.shape[1]), dtype=np.float32)
        for start in range(0, n_species, _SUM_BLOCK):  # the species' unit vectors a block at a time
            genus = self.species_genus[start: start + _SUM_BLOCK]
            kept = genus >= 0
            units = self.species_sum[start: start + _SUM_BLOCK][kept] / self.species_norm[start: start + _SUM_BLOCK][kept, None]
            self.genus_sum += _sum_rows_by_code(units, genus[kept], len(self.genera))
        self.unit = (self.genus_sum / np.linalg.norm(self.genus_sum, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)

    def _species_unit(self, species: int) -> np.ndarray:
        return self.species_sum[species] / self.species_norm[species]

    def scores(self, queries: np.ndarray, genera: Sequence[Sequence[str]]) -> list[dict[str, float]]:
        """Per query, cosine to the prototype of each genus named (e.g. its candidates' genera)."""
        sims = queries @ self.unit.T
        return [{g: float(sims[q, self.genus_index[g]]) for g in set(names) if g in self.genus_index}
                for q, names in enumerate(genera)]

    def scores_leaving_out(self, query: np.ndarray, record: int, record_vector: np.ndarray, whole_species: bool,
                           genera: Sequence[str]) -> dict[str, float]:
        """As ``scores`` for one library record used as a query, with the record itself (or its
        whole species) taken out of the prototypes, as in calibration's simulated queries."""
        sp = int(self.species_code[record])
        g_own = int(self.species_genus[sp])
        out = {}
        for g in set(genera):
            gi = self.genus_index.get(g)
            if gi is None:
                continue
            v = self.genus_sum[gi]
            if gi == g_own:
                rest = self.species_sum[sp] - record_vector
                norm = np.linalg.norm(rest)
                v = v - self._species_unit(sp) + (0 if whole_species or norm < 1e-9 else rest / norm)
            n = np.linalg.norm(v)
            out[g] = float(query @ v / n) if n > 1e-9 else -1.0
        return out


_NAMES_BY_RANK = attrgetter(*RANKS)


_SUM_BLOCK = 65536  # rows summed at once


def _sum_rows_by_code(rows: np.ndarray, code: np.ndarray, n_codes: int, block: int = _SUM_BLOCK) -> np.ndarray:
    """(n_codes, d) float32 sums of ``rows`` grouped by ``code`` (np.add.at is ~20x slower), a
    block of rows at a time so a memory-mapped matrix is never copied whole."""
    out = np.zeros((n_codes, rows.shape[1]), dtype=np.float32)
    for start in range(0, len(code), block):
        part = code[start: start + block]
        order = np.argsort(part, kind="stable")
        sorted_code = part[order]
        starts = np.flatnonzero(np.r_[True, sorted_code[1:] != sorted_code[:-1]])
        block_rows = read_rows(rows, start, start + block)[order]
        out[sorted_code[starts]] += np.add.reduceat(block_rows, starts, axis=0)
    return out


def vote(c: Candidates, temperature: float) -> dict[str, tuple[str, float]]:
    """Rank -> (winning name, its share of the vote), consistent down the ranks."""
    if len(c.scores) == 0:
        return {r: ("", 0.0) for r in RANKS}
    # plain Python floats and name tuples: this runs once per query, and numpy scalars and
    # per-name attribute lookups made it the slowest step of `bioscan identify`
    w = np.exp((np.asarray(c.scores, dtype=np.float64) - float(c.scores[0])) / temperature).tolist()
    names = [_NAMES_BY_RANK(t) for t in c.taxonomy]
    members = list(range(len(w)))
    out: dict[str, tuple[str, float]] = {}
    for r, rank in enumerate(RANKS):
        totals: dict[str, float] = {}
        for i in members:
            name = names[i][r]
            if name:
                totals[name] = totals.get(name, 0.0) + w[i]
        if not totals:
            out[rank] = ("", 0.0)
            continue
        if rank == "genus" and c.genus_scores:
            # the genus nearest by prototype; its share is its softmax weight among the candidate genera
            proto = {g: c.genus_scores.get(g, -1.0) for g in totals}
            best = max(totals, key=lambda g: (proto[g], totals[g]))
            z = np.exp((np.array(list(proto.values())) - proto[best]) / PROTOTYPE_TEMPERATURE)
            out[rank] = (best, float(1.0 / z.sum()))
        else:
            best = max(totals, key=totals.__getitem__)
            out[rank] = (best, totals[best] / sum([w[i] for i in members]))
        members = [i for i in members if names[i][r] == best]
    return out


def species_gap(c: Candidates) -> float:
    """Top score minus the best score of another species among the candidates (minus the
    last score when every candidate is of the top species)."""
    top_species = c.taxonomy[0].species
    for t, score in zip(c.taxonomy, c.scores):
        if t.species != top_species:
            return float(c.scores[0] - score)
    return float(c.scores[0] - c.scores[-1])


def presence_score(c: Candidates, weights: Sequence[float]) -> float:
    """``calibration.novelty``'s score: low when the query's species is likely absent."""
    return weights[0] * float(c.scores[0]) + weights[1] * species_gap(c)


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
        too_far: set[str] = set()  # ranks the small-library rule leaves uncalled
        if too_small_to_calibrate(self.calibration):
            rule = SMALL_LIBRARY_RULE[c.score_kind]
            too_far = {r for r in LINEAGE if top < rule[r]}
            novel = bool(too_far)
        elif "novelty" in cal:
            novel = presence_score(c, cal["novelty"]["weights"]) < cal["novelty"]["threshold"]
        else:
            novel = top < cal["threshold"]["species"]
        votes = vote(c, cal["temperature"])
        ranks: dict[str, RankCall] = {}
        for rank in RANKS:
            name, share = votes[rank]
            a, b, d = cal["logistic"][rank]
            conf = _sigmoid(a + b * top + d * share) if name else 0.0
            # a BIN may be called when the species is not (species sharing a BIN), never without its genus
            parent = "genus" if rank == "bin_uri" else (LINEAGE[LINEAGE.index(rank) - 1] if rank != "order" else "")
            ok = bool(name) and conf >= self.min_confidence and (not parent or bool(ranks[parent].name))
            if (rank == "species" and novel) or rank in too_far:
                ok = False
            if rank == "bin_uri" and top < cal["threshold"]["bin_uri"]:
                ok = False
            ranks[rank] = RankCall(rank, name if ok else "", conf)
        novel_rank = ""
        if novel:  # where the novelty starts: the coarsest rank left uncalled
            novel_rank = next(r for r in LINEAGE if not ranks[r].name)
        return Call(ranks, novel=novel, novel_rank=novel_rank)


def too_small_to_calibrate(calibration: dict | None) -> bool:
    """True for a calibration made on fewer than MIN_CALIBRATION_SPECIES species (SMALL_LIBRARY_RULE applies)."""
    n = (calibration or {}).get("n_species")
    return n is not None and n < MIN_CALIBRATION_SPECIES


def small_library_warning(calibration: dict | None, library_name: str) -> str | None:
    """The warning to show with a library too small to calibrate, else None."""
    if not too_small_to_calibrate(calibration):
        return None
    n = calibration["n_species"]
    return (f"{library_name} holds {n} species, too few to calibrate (at least {MIN_CALIBRATION_SPECIES} are needed "
            "to simulate a missing species): novelty uses a fixed rule, a rank is called only when the top match "
            "is close at that rank; add references of more species for calibrated calls")


# --------------------------------------------------------------------------- calibration
def best_threshold(present: np.ndarray, absent: np.ndarray,
                   max_false_novel: float = 1.0) -> tuple[float, float, float]:
    """The threshold t (absent when score < t) minimising the balanced error, lowered if
    needed so that at most ``max_false_novel`` of ``present`` fall below it.

    Returns (t, share of present below t, share of absent at or above t).
    """
    if len(present) == 0 or len(absent) == 0:
        return (float("-inf"), 0.0, 1.0)
    cands = np.unique(np.concatenate([present, absent]))
    p, a = np.sort(present), np.sort(absent)
    false_novel = np.searchsorted(p, cands, side="left") / len(p)
    missed = 1.0 - np.searchsorted(a, cands, side="left") / len(a)
    err = np.where(false_novel <= max_false_novel, false_novel + missed, np.inf)
    i = int(np.argmin(err))
    # every t in (cands[i-1], cands[j]] is as good for the run i..j of equal error: take the middle
    j = i
    while j + 1 < len(cands) and np.isclose(err[j + 1], err[i]):
        j += 1
    lower = cands[i - 1] if i > 0 else cands[i]
    return float((lower + cands[j]) / 2), float(false_novel[i]), float(missed[i])


def _fit_logistic(X: np.ndarray, y: np.ndarray) -> list[float]:
    from sklearn.linear_model import LogisticRegression

    if len(y) == 0 or y.min() == y.max():
        # every simulated call right (or wrong): no slope to fit, and "always right" on n cases is
        # not certainty; Laplace's rule of succession, (right + 1) / (n + 2), is the honest constant
        p = (float(y.sum()) + 1.0) / (len(y) + 2.0)
        return [math.log(p / (1.0 - p)), 0.0, 0.0]
    m = LogisticRegression(C=10.0, max_iter=1000).fit(X, y)
    return [float(m.intercept_[0]), float(m.coef_[0][0]), float(m.coef_[0][1])]


def _fit_novelty(present: Sequence[Candidates], absent: Sequence[Candidates], max_false_novel: float) -> dict:
    """``calibration.novelty``: presence-score weights and threshold.

    The weights are the direction (cos a, sin a) in the (top score, species gap) plane, a from
    0 (the top score alone) to 88 degrees, whose best threshold has the lowest balanced error
    under the false-flag cap: so the score never does worse than the top score alone on the
    simulated queries. (A logistic fit of the two features does: it fits likelihood, not
    the cut.)
    """
    def features(cands):
        return np.array([(float(c.scores[0]), species_gap(c)) for c in cands]).reshape(-1, 2)

    p, a = features(present), features(absent)
    best: tuple | None = None  # (balanced error, weights, threshold, false novel, missed novel)
    for angle in np.radians(np.arange(0, 90, 2)):
        w = np.array([math.cos(angle), math.sin(angle)])
        t, fn, mn = best_threshold(p @ w, a @ w, max_false_novel)
        if best is None or fn + mn < best[0] - 1e-12:
            best = (fn + mn, w, t, fn, mn)
    _, w, t, fn, mn = best
    return {"weights": [float(x) for x in w], "threshold": t, "false_novel": fn, "missed_novel": mn}


def _codes(taxonomy: Sequence[Taxonomy], rank: str) -> np.ndarray:
    """A code per name at ``rank``; a record not named there (a BOLD reference identified only to
    family has no genus or species) gets a code of its own, so unnamed records never make a group."""
    if hasattr(taxonomy, "codes_of"):  # engine.reference_columns.TaxonomyTable: already coded (0: unnamed)
        raw = taxonomy.codes_of(rank)
        names = taxonomy.names_of(rank)
        by_name = np.zeros(len(names), dtype=np.int64)
        by_name[np.argsort(names[1:], kind="stable") + 1] = np.arange(len(names) - 1)
        out = by_name[raw]
        unnamed = raw == 0
        out[unnamed] = np.arange(len(names) - 1, len(names) - 1 + int(unnamed.sum()))
        return out
    names = [t.get(rank) for t in taxonomy]
    index = {name: i for i, name in enumerate(sorted({x for x in names if x}))}
    unnamed = iter(range(len(index), len(index) + len(names)))
    return np.array([index[x] if x else next(unnamed) for x in names], dtype=np.int64)


def _n_named(taxonomy: Sequence[Taxonomy], rank: str) -> int:
    """How many distinct names the records give at ``rank``."""
    if hasattr(taxonomy, "names_of"):  # a TaxonomyTable lists each name once
        return len(set(taxonomy.codes_of(rank).tolist()) - {0})
    return len({t.get(rank) for t in taxonomy if t.get(rank)})


def simulate_queries(matrix, taxonomy, sequences, sample, k, progress=None, prototypes=None, kmer_index=None):
    """Candidates of each sampled record under each removal scenario, per score kind.

    Returns {kind: {scenario: [(record index, Candidates) ...]}} for scenarios "self"
    (the record removed), "species" and "bin_uri" (its whole species / BIN removed).
    Identity candidates are found as engine.identify finds them: the first FIRST_ALIGNED of
    the embedding's, then as many more as engine.kmer_index.after_first asks for, or those of
    ``kmer_index``'s shared-k-mer search where none of the first reaches WIDEN_BELOW identity.
    """
    from engine.align import identity
    from engine.kmer_index import FIRST_ALIGNED, after_first, top_shared, widen
    from engine.progress import report

    from engine.search import ExactIndex

    kinds = ["similarity"] + (["identity"] if sequences is not None and any(sequences) else [])
    scenarios = {"self": None, "species": _codes(taxonomy, "species"), "bin_uri": _codes(taxonomy, "bin_uri")}
    # a record's nearest others under each scenario are among its nearest k + (its species or BIN) + 1
    group = np.maximum(np.bincount(scenarios["species"])[scenarios["species"]],
                       np.bincount(scenarios["bin_uri"])[scenarios["bin_uri"]])
    index = ExactIndex(matrix)  # exact, a block of references at a time: memory bounded at any size
    out = {kind: {s: [] for s in scenarios} for kind in kinds}
    chunk = 256
    for start in range(0, len(sample), chunk):
        rows = sample[start: start + chunk]
        queries = gather_rows(matrix, rows)  # through the file: scattered rows of a mapping stay resident
        depth = min(len(taxonomy), k + 1 + int(group[rows].max()))
        top_s, top_i = index.search(queries, depth)
        shared = (kmer_index.shared([sequences[i] or "" for i in rows])
                  if kmer_index is not None and "identity" in kinds else None)
        for scen, codes in scenarios.items():
            for j, i in enumerate(rows):
                keep = top_i[j] != i
                if codes is not None:
                    keep &= codes[top_i[j]] != codes[i]
                cand, cand_s = top_i[j][keep][:k], top_s[j][keep][:k]
                if len(cand) == 0:
                    continue
                for kind in kinds:
                    if kind == "identity":  # the candidates engine.identify aligns (kmer_index.after_first)
                        def align(cands):
                            return np.array([identity(sequences[i], sequences[c] or "") if sequences[i] else 0.0
                                             for c in cands])
                        first = cand[:FIRST_ALIGNED]
                        first_scores = align(first)
                        rest = after_first(first_scores, [taxonomy[c].species for c in first],
                                           [taxonomy[c].species for c in cand[FIRST_ALIGNED:]])
                        if rest is None and shared is None:
                            rest = list(range(len(cand) - len(first)))
                        more = cand[FIRST_ALIGNED:][rest or []]
                        cand_k = np.concatenate([first, more])
                        scores = np.concatenate([first_scores, align(more)])
                        order = np.argsort(-scores, kind="stable")
                        cand_k, scores = cand_k[order], scores[order]
                        if rest is None:
                            removed = np.zeros(len(taxonomy), bool) if codes is None else codes == codes[i]
                            removed[i] = True
                            extra = top_shared(shared, j, k, removed)
                            extra = extra[~np.isin(extra, cand_k)]
                            cand_k, scores = widen(cand_k, scores, extra, align(extra), k)
                    else:
                        cand_k, scores = cand, cand_s
                    tax = [taxonomy[c] for c in cand_k]
                    genus_scores = None
                    if kind == "similarity" and prototypes is not None and scen != "bin_uri":
                        genus_scores = prototypes.scores_leaving_out(queries[j], int(i), queries[j], scen == "species",
                                                                     [t.genus for t in tax])
                    out[kind][scen].append((int(i), Candidates(tax, scores, kind, genus_scores)))
        report(progress, min(start + chunk, len(sample)), len(sample), "calibrating")
    return out


def calibrate(
    matrix: np.ndarray,
    taxonomy: Sequence[Taxonomy],
    sequences: Sequence[str | None] | None = None,
    n_samples: int = 4000,
    k: int = 50,
    seed: int = 0,
    max_false_novel: float = MAX_FALSE_NOVEL,
    progress=None,
    kmer_index=None,
) -> dict:
    """Calibrate thresholds, vote temperature and confidences on a library (see module doc).

    ``matrix`` holds the library's L2-normalised embeddings and ``taxonomy`` their labels;
    with ``sequences`` the identity mode is calibrated too (its candidates widened by
    ``kmer_index``, the library's engine.kmer_index.KmerIndex, as identification does).
    """
    n = len(taxonomy)
    k = max(1, min(k, n - 2))
    rng = np.random.default_rng(seed)
    # a record alone has no other to be simulated against (a one-record library: the fallback rule alone)
    sample = np.sort(rng.choice(n, size=min(n_samples, n), replace=False)) if n >= 2 else np.zeros(0, np.int64)
    sims = simulate_queries(matrix, taxonomy, sequences, sample, k, progress, GenusPrototypes(matrix, taxonomy),
                            kmer_index)
    species_n = np.bincount(_codes(taxonomy, "species"))[_codes(taxonomy, "species")]
    bin_n = np.bincount(_codes(taxonomy, "bin_uri"))[_codes(taxonomy, "bin_uri")]
    out: dict = {"n_samples": int(len(sample)), "k": k, "n_references": n, "max_false_novel": max_false_novel,
                 "n_species": _n_named(taxonomy, "species")}
    for kind, scen in sims.items():
        cal: dict = {"threshold": {}, "rates": {}}
        for rank, others in (("species", species_n), ("bin_uri", bin_n)):
            # only records whose species (BIN) keeps other members can be a "present" case
            present = np.array([c.scores[0] for i, c in scen["self"] if others[i] >= 2])
            # a record not named at the rank cannot stand for a missing species (BIN) of its own
            absent = np.array([c.scores[0] for i, c in scen[rank] if taxonomy[i].get(rank)])
            t, fn, mn = best_threshold(present, absent, max_false_novel if rank == "species" else 1.0)
            cal["threshold"][rank] = t
            cal["rates"][rank] = {"false_novel": fn, "missed_novel": mn,
                                  "n_present": int(len(present)), "n_absent": int(len(absent))}
        if kind == "similarity":  # identity: the top score alone (see the module doc)
            cal["novelty"] = _fit_novelty([c for i, c in scen["self"] if species_n[i] >= 2],
                                          [c for i, c in scen["species"] if taxonomy[i].species], max_false_novel)
        # temperature: most accurate genus votes for queries of species absent from the library
        absent_q = [(i, c) for i, c in scen["species"] if taxonomy[i].genus]
        acc = {T: np.mean([vote(c, T)["genus"][0] == taxonomy[i].genus for i, c in absent_q]) if absent_q else 0.0
               for T in TEMPERATURES[kind]}
        cal["temperature"] = max(acc, key=acc.__getitem__)
        cal["genus_accuracy_species_absent"] = {str(T): round(float(a), 4) for T, a in acc.items()}
        rows, named = [], []
        for i, c in scen["self"] + scen["species"]:
            v = vote(c, cal["temperature"])
            rows.append([(float(c.scores[0]), v[r][1], float(v[r][0] == taxonomy[i].get(r))) for r in RANKS])
            named.append([bool(taxonomy[i].get(r)) for r in RANKS])
        v = np.array(rows).reshape(len(rows), len(RANKS), 3)  # (queries, ranks, 3)
        named = np.array(named, dtype=bool).reshape(len(rows), len(RANKS))  # a call is judged where the truth is named
        cal["logistic"] = {rank: _fit_logistic(v[named[:, r], r, :2], v[named[:, r], r, 2].astype(int))
                           for r, rank in enumerate(RANKS)}
        out[kind] = cal
    return out
