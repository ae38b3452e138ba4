"""Identify specimen photos against a reference library, and add photo references to one.

A photo is embedded by the image pack into the DNA model's space (see engine.train.image),
then matched against the library's photo references when it has any (calls from order to
species, by the nearest references), else against its DNA references (cross-modal, a
labelled fallback: calls stop at family, the rank the pack was aligned at).

Domain: a photo whose embedding is far from every taxon the model was trained on and every
taxon of the library's photo references (``domain_score``: the best cosine to their centroids)
gets no call, or only the ranks its score supports, and the reason ``OUTSIDE_DOMAIN``. The
thresholds are fitted on photos the model never saw (``fit_domain``), stored in the pack.

Photo evidence alone never flags a new species: photo calls are never ``novel``.

Calibration follows engine.assign (vote temperature, logistic confidence per rank):

* photo references: the library's own photos, leave-one-out, or photos not in the library
  (``calibrate_photo_library``);
* DNA references: photos held out of training, matched against the DNA library the pack
  was aligned to; stored in the pack's manifest (``"calibration"``). A library built with
  another DNA model has another space, so cross-modal matching refuses it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.assign import (DEFAULT_MIN_CONFIDENCE, TEMPERATURES, Assigner, Candidates, _fit_logistic,
                           best_threshold, vote)
from engine.errors import BioscanError, LibraryError, ModelPackError, TransientError, is_transient
from engine.identify import TOP_K, Identification
from engine.io.images import LabelledPhoto, check_photo
from engine.library import ReferenceLibrary, ReferenceRecord
from engine.photo_labels import BARCODED_MIN_CONFIDENCE, OUTSIDE_DOMAIN
from engine.progress import ProgressCallback, report
from engine.records import RANKS, REPORTED_MATCHES, Call, Match, RankCall, Taxonomy

PHOTO_RANKS = ("order", "family")  # the ranks of calls against DNA references
REFERENCE_RANKS = ("order", "family", "genus", "species")  # against photo references
DOMAIN_MIN_PHOTOS = 5  # a taxon supports the domain with at least this many photos
DOMAIN_KEY = "domain"
DOMAIN_MAX_FALSE_OUTSIDE = 0.02  # share of photos of trained orders the order threshold may leave uncalled
UNKNOWN_FAMILY = "(family unknown)"
CALIBRATION_KEY = "calibration.image"
_NEVER = -2.0  # below any cosine: never "absent"
_ALWAYS_ABSENT = 2.0  # above any cosine: BINs are never called from photos
_UNCALLED = [-10.0, 0.0, 0.0]  # logistic giving ~0 confidence: genus and species are never called
PHOTO_BATCH = 32  # photos decoded, embedded and matched at a time: identify's memory is one batch


def centred(matrix: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Unit rows of ``matrix - center``: DNA embeddings share a large common component, so
    photos are aligned to (and matched in) the library-centred DNA space."""
    m = (matrix - center).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True).clip(1e-12)


def calibrate_photo_calls(emb: np.ndarray, truth: Sequence[Taxonomy], ref_matrix: np.ndarray,
                          ref_taxonomy: Sequence[Taxonomy], k: int = TOP_K, exclude_self: bool = False,
                          ranks: Sequence[str] = PHOTO_RANKS) -> dict:
    """Assigner calibration for photo calls at ``ranks``, from labelled photos.

    The vote temperature is the one that makes the photos' finest-rank votes most accurate; the
    logistic confidences are fitted per rank on (top score, vote share) of the photos named at
    that rank; other ranks are never called. Photos are never "novel" (the novelty threshold is
    below any score). With ``exclude_self`` the photos are the references themselves (row i =
    reference i) and each is left out of its own search.
    """
    sims = emb @ ref_matrix.T
    if exclude_self:
        np.fill_diagonal(sims, -np.inf)
    ref_taxonomy = [_voting_taxonomy(t) for t in ref_taxonomy]
    truth = [_voting_taxonomy(t) for t in truth]
    tops = []
    for q in range(len(truth)):
        top = np.argsort(-sims[q])[:k]
        tops.append(top[np.isfinite(sims[q][top])])

    def votes_at(temperature: float) -> dict[str, list]:
        rows = {r: [] for r in ranks}
        for q, t in enumerate(truth):
            top = tops[q]
            if not len(top):
                continue
            v = vote(Candidates([ref_taxonomy[c] for c in top], sims[q][top], "similarity"), temperature)
            for r in ranks:
                if t.get(r):
                    rows[r].append((float(sims[q][top[0]]), v[r][1], float(v[r][0] == t.get(r))))
        return rows

    def accuracy(rows: dict[str, list]) -> float:
        scored = next((rows[r] for r in reversed(ranks) if len(rows[r]) >= 10), None) or rows[ranks[0]]
        return float(np.mean([x[2] for x in scored])) if scored else 0.0

    temperature = max(TEMPERATURES["similarity"], key=lambda tt: accuracy(votes_at(tt)))
    rows = votes_at(temperature)
    logistic, rates = {}, {}
    for r in RANKS:
        if r in ranks and rows[r]:
            v = np.array(rows[r])
            logistic[r] = _fit_logistic(v[:, :2], v[:, 2].astype(int))
            rates[r] = {"n": len(rows[r]), "top_vote_accuracy": round(float(v[:, 2].mean()), 4)}
        else:
            logistic[r] = list(_UNCALLED)
    threshold = {"species": _NEVER, "bin_uri": _ALWAYS_ABSENT}  # never novel; BINs never called
    return {"similarity": {"threshold": threshold, "temperature": temperature, "logistic": logistic, "rates": rates},
            "ranks": list(ranks), "n_photos": len(truth)}


def _voting_taxonomy(t: Taxonomy) -> Taxonomy:
    """A photo reference known only to order votes for "family unknown" rather than not at all,
    so that e.g. bee photos (no family label) do not leave the family vote to ant photos."""
    return replace(t, family=UNKNOWN_FAMILY) if t.order and not t.family else t


@dataclass
class PhotoCall(Call):
    """A photo's call, with its domain score and, when ranks were left uncalled for it, why."""

    domain_score: float = float("nan")
    reason: str = ""
    references: str = ""  # "image": matched against photo references; "dna": the cross-modal fallback


def _photo_call(call: Call, ranks: Sequence[str], domain_score: float = float("nan"),
                domain: dict | None = None, references: str = "") -> PhotoCall:
    """Keep only the calibrated ``ranks`` the domain score supports; never novel; "family
    unknown" is no family call."""
    allowed = domain_ranks(domain_score, domain) if domain else tuple(ranks)
    kept = {r: (call.ranks[r] if r in ranks and r in allowed and call.ranks[r].name != UNKNOWN_FAMILY
                else RankCall(r, "", call.ranks[r].confidence if r in ranks else 0.0)) for r in RANKS}
    cut = [r for r in ranks if r not in allowed and call.ranks[r].name]
    return PhotoCall(kept, novel=False, novel_rank="", domain_score=domain_score,
                     reason=OUTSIDE_DOMAIN if cut else "", references=references)


# ------------------------------------------------------------------------- domain
def pack_matrix(m: np.ndarray) -> dict:
    """A float matrix as JSON (float16, base64) for a manifest."""
    import base64

    m = np.ascontiguousarray(m, dtype=np.float16)
    return {"dtype": "float16", "shape": list(m.shape), "base64": base64.b64encode(m.tobytes()).decode("ascii")}


def unpack_matrix(d: dict) -> np.ndarray:
    import base64

    try:
        m = np.frombuffer(base64.b64decode(d["base64"]), dtype=np.dtype(d["dtype"])).reshape(d["shape"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelPackError(f"the image model's domain prototypes are unreadable ({exc})") from exc
    return m.astype(np.float32)


def domain_prototypes(emb: np.ndarray, taxonomy: Sequence[Taxonomy], labels: Sequence[str] = (),
                      min_photos: int = DOMAIN_MIN_PHOTOS) -> tuple[np.ndarray, list[str]]:
    """Unit centroids of every taxon (at each rank, and each label such as a common name) with at
    least ``min_photos`` photos - the regions of the embedding space the photos cover - and the
    order of each."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, t in enumerate(taxonomy):
        names = [f"{r}:{t.get(r)}" for r in REFERENCE_RANKS if t.get(r)]
        if i < len(labels) and labels[i] and t.order:
            names.append(f"label:{labels[i]}")
        for n in names:
            groups.setdefault((t.order, n), []).append(i)
    kept = [(order, ix) for (order, _), ix in groups.items() if len(ix) >= min_photos and order]
    if not kept:
        return np.zeros((0, emb.shape[1]), dtype=np.float32), []
    m = np.stack([emb[ix].mean(axis=0) for _, ix in kept]).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True).clip(1e-12), [order for order, _ in kept]


def domain_score(emb: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Best cosine of each photo to the domain prototypes (-1 when there are none)."""
    if not len(prototypes):
        return np.full(len(emb), -1.0, dtype=np.float32)
    return (np.asarray(emb, dtype=np.float32) @ prototypes.T).max(axis=1)


def fit_domain(emb: np.ndarray, orders: Sequence[str], prototypes: np.ndarray, prototype_orders: Sequence[str],
               max_false_outside: float = DOMAIN_MAX_FALSE_OUTSIDE, family_quantile: float = 0.03) -> dict:
    """Domain thresholds from labelled photos the model never saw (``emb``, of ``orders``).

    Order: an order the model was not trained on is simulated for each photo by leaving its own
    order's prototypes out (leave-one-order-out, as engine.assign simulates absent species); the
    threshold separates the photos' scores with their order present from those with it absent
    (balanced error, at most ``max_false_outside`` of present photos below). With photos of fewer
    than two orders nothing can be simulated and no order is ever called from a photo: a model that
    saw one order cannot tell it from the others. Family and finer: the ``family_quantile`` of the
    present scores, and never below the order's threshold.
    """
    sims = np.asarray(emb, dtype=np.float32) @ prototypes.T if len(prototypes) else np.zeros((len(emb), 0))
    po = np.asarray(prototype_orders)
    present = sims.max(axis=1) if sims.shape[1] else np.full(len(emb), -1.0)
    absent = np.array([sims[i, po != o].max() for i, o in enumerate(orders) if (po != o).any()])
    known = sorted(set(prototype_orders))
    if len(known) < 2 or not len(absent):
        t_order, false_outside, missed = _ALWAYS_ABSENT, 1.0, 0.0
    else:
        t_order, false_outside, missed = best_threshold(present, absent, max_false_outside)
    t_family = max(t_order, float(np.quantile(present, family_quantile))) if len(present) else _ALWAYS_ABSENT
    return {"threshold": {"order": round(float(t_order), 4), "family": round(float(t_family), 4)},
            "fit": {"orders": known, "photos": len(emb), "order_absent_simulated": int(len(absent)),
                    "false_outside": round(false_outside, 4), "order_absent_above_threshold": round(missed, 4),
                    "family_below_threshold": round(float(np.mean(present < t_family)), 4) if len(present) else 0.0}}


def domain_ranks(score: float, domain: dict) -> tuple[str, ...]:
    """The ranks a photo's domain score supports: each rank needs its threshold (a rank without
    one needs the threshold of the nearest coarser rank that has one)."""
    thresholds = domain.get("threshold", {})
    allowed, need = [], -np.inf
    for r in REFERENCE_RANKS:
        need = thresholds.get(r, need)
        if not np.isfinite(score) or score < need:
            break
        allowed.append(r)
    return tuple(allowed)


class _ReferenceSet:
    """One modality of a library's references as photos are matched against them."""

    def __init__(self, library: ReferenceLibrary, modality: str, calibration: dict, min_confidence: float,
                 center=None):
        self.modality = modality
        self.refs = library.references(modality)
        self.vote_taxonomy = [_voting_taxonomy(t) for t in self.refs.taxonomy]
        self.index = self.refs.index
        if modality == "dna" and center:  # photos live in the library-centred DNA space
            from engine.search import ExactIndex

            self.index = ExactIndex(centred(self.refs.matrix, np.asarray(center, dtype=np.float32)))
        self.assigner = Assigner(calibration, min_confidence=min_confidence)
        self.ranks = tuple(calibration.get("ranks", PHOTO_RANKS))


class ImageIdentifier:
    """Identifies photos (PIL images) against a library; ``match`` is the importer's hook.

    With photo references, a photo they cover (its domain score against their taxa reaches the
    pack's order threshold) is called from them; any other photo, and every photo of a library
    without photo references, from the DNA references (the labelled fallback), when the pack was
    aligned to the library's DNA model.
    """

    modality = "image"

    def __init__(self, library: ReferenceLibrary, encoder, k: int = TOP_K,
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE):
        self.library, self.encoder, self.k = library, encoder, k
        manifest = encoder.pack.manifest
        self.domain = manifest.get(DOMAIN_KEY)
        self.photo_set = self.dna_set = None
        if library.count("image"):
            library.check_encoder(encoder)
            raw = library.meta.get(CALIBRATION_KEY)
            if not raw:
                raise LibraryError(f"{library.path.name}: its photo references are not calibrated "
                                   "(rebuild with `bioscan library build --images`)")
            self.photo_set = _ReferenceSet(library, "image", json.loads(raw), min_confidence)
        dna = library.model_for("dna")
        aligned = manifest.get("aligned_to", {})
        if self.photo_set is None:
            if dna is None:
                raise LibraryError(f"{library.path.name} has neither photo nor DNA references")
            if aligned.get("sha256") != dna["sha256"]:
                raise LibraryError(
                    f"image model {encoder.pack.ident} was aligned to DNA model {aligned.get('name', '?')} "
                    f"(sha256 {str(aligned.get('sha256', ''))[:12]}…), but {library.path.name} was built with "
                    f"{dna['name']} (sha256 {dna['sha256'][:12]}…); add photo references with "
                    "`bioscan library build --images` to identify photos against it")
            if not manifest.get("calibration"):
                raise ModelPackError(f"image model {encoder.pack.ident} has no calibration for photo calls")
        if (dna is not None and aligned.get("sha256") == dna["sha256"] and manifest.get("calibration")
                and (self.photo_set is None or self.domain)):
            self.dna_set = _ReferenceSet(library, "dna", manifest["calibration"], min_confidence, aligned.get("center"))
        primary = self.photo_set or self.dna_set
        self.reference_modality, self.refs, self.ranks = primary.modality, primary.refs, primary.ranks
        self.domain_prototypes = np.zeros((0, encoder.dim), dtype=np.float32)
        self.reference_prototypes = np.zeros((0, encoder.dim), dtype=np.float32)
        if self.domain:
            self.domain_prototypes = unpack_matrix(self.domain["prototypes"])
            if self.photo_set is not None:  # the library's photos widen what the model knows
                self.reference_prototypes = domain_prototypes(self.photo_set.refs.matrix,
                                                              self.photo_set.refs.taxonomy)[0]

    def match(self, images: Sequence, progress: ProgressCallback = None,
              embeddings: np.ndarray | None = None) -> list[tuple[Call, list[Match]] | BioscanError]:
        """Calls (PhotoCall: against photo references order to species, against DNA references
        order and family; no call, or only the coarse ranks its domain score supports, for a photo
        unlike the model's training and the library's photos) and ranked matches for 8-bit RGB PIL
        images, one per image.

        The images are embedded here unless ``embeddings`` are given (the importer embeds once and
        stores what it embedded). A photo the image model fails on (Pillow, numpy, onnxruntime: its
        batch is retried photo by photo), or whose given embedding is not finite, gets a
        BioscanError in its place: a TransientError (worth a retry on the next run) when
        engine.errors.is_transient says so.
        """
        if not len(images):
            return []
        failures: dict[int, Exception] = {}
        if embeddings is None:
            emb = self.encoder.embed(images, progress=progress, failures=failures)
        else:
            emb = np.asarray(embeddings, dtype=np.float32)
            failures = {q: ValueError("the image model gave a non-finite embedding")
                        for q in np.flatnonzero(~np.isfinite(emb).all(axis=1)).tolist()}
        good = [q for q in range(len(images)) if q not in failures]
        out: list[tuple[Call, list[Match]] | BioscanError] = [_photo_failure(failures[q]) if q in failures else None
                                                              for q in range(len(images))]
        if not good:
            return out
        e = emb[good]
        if self.domain:
            by_refs = domain_score(e, self.reference_prototypes)
            scores = np.maximum(domain_score(e, self.domain_prototypes), by_refs)
            # photos the library's photo references do not cover go to the DNA references
            covered = by_refs >= self.domain.get("threshold", {}).get("order", _ALWAYS_ABSENT)
        else:
            scores, covered = np.full(len(good), np.nan), np.ones(len(good), dtype=bool)
        for ref_set, rows in ((self.photo_set, np.flatnonzero(covered if self.dna_set else np.ones_like(covered))),
                              (self.dna_set, np.flatnonzero(~covered) if self.photo_set else np.arange(len(good)))):
            if ref_set is None or not len(rows):
                continue
            sims, pos = ref_set.index.search(e[rows], self.k)
            for i, row in enumerate(rows):
                tax = [ref_set.refs.taxonomy[c] for c in pos[i]]
                votes = [ref_set.vote_taxonomy[c] for c in pos[i]]
                call = _photo_call(ref_set.assigner.assign(Candidates(votes, sims[i], "similarity")), ref_set.ranks,
                                   float(scores[row]), self.domain, ref_set.modality)
                out[good[row]] = (call, [Match(ref_set.refs.record_ids[c], tax[j], float(sims[i][j]))
                                         for j, c in enumerate(pos[i][:REPORTED_MATCHES])])
        return out

    def identify(self, paths: Sequence[str | Path], progress: ProgressCallback = None) -> list[Identification]:
        """One Identification (modality "image") per photo file, in order; bad files are error rows.

        Photos are read (engine.io.images.check_photo), embedded and matched PHOTO_BATCH at a
        time and dropped before the next batch is read, so memory does not grow with their number.
        """
        paths = [Path(p) for p in paths]
        side = self.encoder.preprocess.decode_side
        results: list[Identification] = []
        for start in range(0, len(paths), PHOTO_BATCH):
            rows, images = [], []
            for p in paths[start: start + PHOTO_BATCH]:
                row = Identification(p.stem, str(p), "image")
                results.append(row)
                try:
                    images.append(check_photo(p, min_side=side)[0])
                    rows.append(row)
                except BioscanError as exc:
                    row.error = str(exc)
            for row, result in zip(rows, self.match(images)):
                if isinstance(result, BioscanError):
                    row.error = f"{Path(row.source_file).name}: {result}"
                else:
                    row.call, row.matches = result
            images.clear()
            report(progress, len(results), len(paths), "identifying photos")
        return results


def _photo_failure(exc: Exception) -> BioscanError:
    """A photo's own failure in the image model, as the error its row shows."""
    detail = f"{type(exc).__name__}: {exc}"
    if is_transient(exc):
        error: BioscanError = TransientError(f"image identification failed for now ({detail}); "
                                             "it is tried again on the next run")
    else:
        error = BioscanError(f"image identification failed ({detail})")
    error.__cause__ = exc
    return error


def add_photos(library: ReferenceLibrary, photos: Sequence[LabelledPhoto], encoder,
               progress: ProgressCallback = None, batch: int = 64, calibration_photos: Sequence[LabelledPhoto] = (),
               sources: dict[str, str] | None = None) -> tuple[int, list[tuple[str, str]]]:
    """Embed labelled photos (those with at least an order) into the library; recalibrate.

    ``calibration_photos`` (not added) calibrate the library's photo calls when given, else its
    photos do, each left out of its own search. ``sources`` maps a specimen id to the provenance
    kept with its reference (default: the photo's file name).
    Returns (added, skipped as (specimen id, reason)).
    """
    added, skipped = 0, []
    usable = []
    for p in photos:
        if not p.taxonomy.order:
            skipped.append((p.specimen_id, "no order in the labels table"))
        else:
            usable.append(p)
    for start in range(0, len(usable), batch):
        chunk, emb, failed = _embed_photos(usable[start: start + batch], encoder)
        skipped.extend(failed)
        added += library.add((ReferenceRecord(p.specimen_id, p.taxonomy, e, None,
                                              source=(sources or {}).get(p.specimen_id, p.path.name))
                              for p, e in zip(chunk, emb)), encoder)
        report(progress, min(start + batch, len(usable)), len(usable), f"added {added} photo references")
    if added:
        queries = None
        if calibration_photos:
            chunk, emb, _ = _embed_photos([p for p in calibration_photos if p.taxonomy.order], encoder)
            queries = (emb, [p.taxonomy for p in chunk])
        calibrate_photo_library(library, queries)
    return added, skipped


def _embed_photos(photos: Sequence[LabelledPhoto], encoder):
    """(photos embedded, their embeddings, [(specimen id, why not)]) read by check_photo."""
    side = encoder.preprocess.decode_side
    chunk, images, skipped = [], [], []
    for p in photos:
        try:
            images.append(check_photo(p.path, min_side=side)[0])
            chunk.append(p)
        except BioscanError as exc:
            skipped.append((p.specimen_id, str(exc)))
    if not chunk:
        return [], np.zeros((0, encoder.dim), dtype=np.float32), skipped
    failures: dict[int, Exception] = {}
    emb = encoder.embed(images, failures=failures)
    skipped.extend((chunk[i].specimen_id, str(_photo_failure(exc))) for i, exc in failures.items())
    keep = [i for i in range(len(chunk)) if i not in failures]
    return [chunk[i] for i in keep], emb[keep], skipped


def calibrate_photo_library(library: ReferenceLibrary, queries: tuple[np.ndarray, Sequence[Taxonomy]] | None = None
                            ) -> dict:
    """Calibration of photo calls (order to species) on the library's photo references: ``queries``
    (embeddings and taxonomy of labelled photos not in the library) against them, else the
    references themselves, each left out of its own search."""
    refs = library.references("image")
    if queries is not None and len(queries[0]):
        cal = calibrate_photo_calls(queries[0], queries[1], refs.matrix, refs.taxonomy, ranks=REFERENCE_RANKS)
    else:
        cal = calibrate_photo_calls(refs.matrix, refs.taxonomy, refs.matrix, refs.taxonomy, exclude_self=True,
                                    ranks=REFERENCE_RANKS)
    library._set_meta(**{CALIBRATION_KEY: json.dumps(cal)})
    return cal


def open_image_identifier(library_path: str | Path | None = None, model_path: str | Path | None = None,
                          device: str = "auto", min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> ImageIdentifier:
    """An ImageIdentifier over a library (default: the bundled one) with the bundled image pack."""
    from engine.models.image_encoder import ImageEncoder
    from engine.models.pack import load_pack
    from engine.resources import default_library_path, default_model_path

    library = ReferenceLibrary.open(library_path or default_library_path())
    built_with = library.model_for("image")
    pack = load_pack(model_path or default_model_path("image"))
    encoder = ImageEncoder(pack, precision=built_with["precision"] if built_with else "int8", device=device)
    return ImageIdentifier(library, encoder, min_confidence=min_confidence)


def fuse_identifications(dna: Sequence[Identification], photos: Sequence[Identification]) -> list[Identification]:
    """One extra "dna+image" result per specimen id that has both a barcode call and a photo call.

    The fused call comes from engine.fuse.fuse; a disagreement between photo and barcode is
    added to the row's QC flags (``photo_disagrees_at_<rank>``).
    """
    from dataclasses import replace

    from engine.fuse import fuse

    by_id = {p.specimen_id: p for p in photos if p.call is not None}
    out = []
    for d in dna:
        p = by_id.get(d.specimen_id)
        if p is None or d.call is None:
            continue
        f = fuse((d.call, d.matches), (p.call, p.matches))
        qc = replace(d.qc, flags=list(d.qc.flags) + f.flags) if d.qc is not None else None
        out.append(Identification(d.specimen_id, f"{d.source_file};{p.source_file}", "dna+image",
                                  call=f.call, matches=f.matches, qc=qc, photo_call=p.call))
    return out


@dataclass
class BarcodedPhotos:
    """What ``add_barcoded_photos`` did: references added, and the photos left out with why."""

    added: int = 0
    specimens: int = 0  # specimens whose barcode call reached the confidence
    skipped: list[tuple[str, str]] = None  # (specimen key / photo, reason)
    library: str = ""  # the library written (learn_barcoded_photos)
    created: bool = False  # the library was made for this, as a copy of the base library

    def __post_init__(self) -> None:
        self.skipped = self.skipped or []

    def summary(self) -> str:
        """"N photo references added from M specimens; K skipped": what the CLI and the GUI say."""
        return (f"{self.added} photo references added from {self.specimens} specimens; "
                f"{len(self.skipped)} skipped")


def barcode_identified_photos(project, min_confidence: float) -> list[tuple[str, str, Taxonomy, dict]]:
    """(specimen key, photo path, taxonomy, provenance) of every photo of a project specimen whose
    barcode call reaches ``min_confidence``: the taxonomy is the barcode call's names, from order
    down to the finest rank at that confidence (an override in review replaces it)."""
    from engine.assign import LINEAGE

    conn = project.conn
    out = []
    rows = conn.execute(
        "SELECT s.id, s.specimen_key, i.id FROM specimens s JOIN items i ON i.specimen_id = s.id "
        "WHERE i.modality = 'dna' AND i.status IN ('ok', 'novel') ORDER BY s.id, COALESCE(i.confidence, 0) DESC, i.id"
    ).fetchall()
    best: dict[int, tuple[str, int]] = {}
    for sid, key, item in rows:
        best.setdefault(sid, (key, item))
    for sid, (key, item) in best.items():
        calls = {r: (n or "", float(c or 0.0)) for r, n, c in conn.execute(
            "SELECT rank, name, confidence FROM calls WHERE item_id = ?", [item])}
        names = {}
        for rank in LINEAGE:
            name, conf = calls.get(rank, ("", 0.0))
            if not name or conf < min_confidence:
                break
            names[rank] = name
        if not names:
            continue
        finest = list(names)[-1]
        provenance = {"project": project.path.name, "specimen": key, "barcode_item": item,
                      "call": f"{finest} {names[finest]} ({calls[finest][1]:.3f}, barcode)"}
        for photo_item, path in conn.execute(
                "SELECT i.id, f.path FROM items i JOIN files f ON f.id = i.file_id WHERE i.specimen_id = ? "
                "AND i.modality = 'photo' AND i.status IN ('ok', 'novel', 'pending') ORDER BY i.id", [sid]):
            out.append((key, path, Taxonomy(**names), dict(provenance, photo=Path(path).name, photo_item=photo_item)))
    return out


def add_barcoded_photos(project_path: str | Path, library: ReferenceLibrary, encoder,
                        min_confidence: float = BARCODED_MIN_CONFIDENCE,
                        progress: ProgressCallback = None) -> BarcodedPhotos:
    """Learn from this sample: the photos of a project's barcode-identified specimens (barcode call
    at ``min_confidence`` or more) become photo references of ``library`` (writable), each named as
    its barcode called it, with its provenance (project, specimen, call) as the reference's source;
    the library's photo calls are then recalibrated. Photo-only specimens (a failed barcode) are
    then matched against the lab's own photos of the same taxa."""
    from engine.project.database import open_project

    with open_project(project_path, readonly=True) as project:
        found = barcode_identified_photos(project, min_confidence)
    result = BarcodedPhotos(specimens=len({k for k, *_ in found}))
    existing = set(library.references("image").record_ids) if library.count("image") else set()
    photos, sources = [], {}
    for key, path, taxonomy, provenance in found:
        rid = f"{key}:{Path(path).name}"
        if rid in existing:
            result.skipped.append((rid, "already a photo reference of this library"))
            continue
        photos.append(LabelledPhoto(Path(path), rid, taxonomy, ""))
        sources[rid] = json.dumps(provenance, sort_keys=True)
    added, skipped = add_photos(library, photos, encoder, progress=progress, sources=sources)
    result.added, result.skipped = added, result.skipped + skipped
    return result


def learn_barcoded_photos(project_path: str | Path, library_path: str | Path, base_library: str | Path | None = None,
                          image_model: str | Path | None = None, min_confidence: float = BARCODED_MIN_CONFIDENCE,
                          device: str = "auto", progress: ProgressCallback = None) -> BarcodedPhotos:
    """``add_barcoded_photos`` into the user library at ``library_path``, written whole or not at
    all (engine.atomic): an existing library is extended through a copy put in place at the end;
    a missing one is made as a copy of ``base_library`` (default: the bundled one; DNA references
    and all). Cancelled (from ``progress``) or failed, nothing is written. `bioscan library
    add-photos` and the desktop app's "Learn photos from barcoded specimens" call it alike."""
    from engine.atomic import atomic_output
    from engine.build import library_output
    from engine.models.image_encoder import ImageEncoder
    from engine.resources import default_library_path, default_model_path

    out = Path(library_path)
    if not Path(project_path).is_file():
        raise BioscanError(f"{project_path}: no such project")
    report(progress, 0, 1, "opening the image model")
    encoder = ImageEncoder.from_path(image_model or default_model_path("image"), device=device)
    report(progress, 0, 1, "reading the project's barcode calls")
    if out.exists():
        with library_output(out, add=True) as lib:
            result = add_barcoded_photos(project_path, lib, encoder, min_confidence, progress=progress)
    else:
        base = ReferenceLibrary.open(base_library or default_library_path())
        try:
            with atomic_output(out, replace=False, database=True) as tmp:
                lib = ReferenceLibrary.create_from(base, tmp)
                try:
                    result = add_barcoded_photos(project_path, lib, encoder, min_confidence, progress=progress)
                    report(progress, 1, 1, "saving the library")  # the last chance to cancel before it is in place
                finally:
                    lib.close()
        finally:
            base.close()
        result.created = True
    result.library = str(out)
    return result
