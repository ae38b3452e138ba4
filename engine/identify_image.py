"""Identify specimen photos against a reference library, and add photo references to one.

A photo is embedded by the image pack into the DNA model's space (see engine.train.image),
then matched against the library's photo references when it has any, else directly
against its DNA references (cross-modal). Calls stop at family: the photo labels we can
train and calibrate on name orders and families (ants = Formicidae, bees, order example
photos), never genera or species, so finer ranks are left empty rather than guessed.

Calibration follows engine.assign (vote temperature, logistic confidence per rank, a
presence threshold) but only for order and family; a photo is "novel" when its top score
says its family is absent from the references:

* photo references: leave-one-out on the library's own photos (``calibrate_photo_library``);
* DNA references: photos held out of training, matched against the DNA library the pack
  was aligned to; stored in the pack's manifest (``"calibration"``). A library built with
  another DNA model has another space, so cross-modal matching refuses it.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.assign import (DEFAULT_MIN_CONFIDENCE, TEMPERATURES, Assigner, Candidates, _fit_logistic,
                           best_threshold, vote)
from engine.errors import BioscanError, LibraryError, ModelPackError, TransientError, is_transient
from engine.identify import TOP_K, Identification
from engine.io.images import LabelledPhoto, check_photo
from engine.library import ReferenceLibrary, ReferenceRecord
from engine.progress import ProgressCallback, report
from engine.records import RANKS, REPORTED_MATCHES, Call, Match, RankCall, Taxonomy

PHOTO_RANKS = ("order", "family")
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
                          ref_taxonomy: Sequence[Taxonomy], k: int = TOP_K, exclude_self: bool = False) -> dict:
    """Assigner calibration for photo calls at order and family, from labelled photos.

    The vote temperature is the one that makes the photos' family (else order) votes most
    accurate; the logistic confidences are fitted per rank on (top score, vote share); the
    "novel" threshold is the family-presence one: the photo's top score with its family in
    the references (present) against the top score with every reference of its family
    removed (absent). With ``exclude_self`` the photos are the references themselves (row
    i = reference i) and each is left out of its own search.
    """
    sims = emb @ ref_matrix.T
    if exclude_self:
        np.fill_diagonal(sims, -np.inf)
    ref_taxonomy = [_voting_taxonomy(t) for t in ref_taxonomy]
    truth = [_voting_taxonomy(t) for t in truth]
    family = np.array([t.family for t in ref_taxonomy])
    tops = []
    present, absent = [], []
    for q, t in enumerate(truth):
        s = sims[q]
        top = np.argsort(-s)[:k]
        top = top[np.isfinite(s[top])]
        tops.append(top)
        if t.family and len(top):
            others = family == t.family
            if exclude_self:
                others[q] = False
            if others.any():
                present.append(float(s[top[0]]))
            rest = s[family != t.family]
            if len(rest):
                absent.append(float(rest.max()))

    def votes_at(temperature: float) -> dict[str, list]:
        rows = {r: [] for r in PHOTO_RANKS}
        for q, t in enumerate(truth):
            top = tops[q]
            if not len(top):
                continue
            v = vote(Candidates([ref_taxonomy[c] for c in top], sims[q][top], "similarity"), temperature)
            for r in PHOTO_RANKS:
                if t.get(r):
                    rows[r].append((float(sims[q][top[0]]), v[r][1], float(v[r][0] == t.get(r))))
        return rows

    def accuracy(rows: dict[str, list]) -> float:
        scored = rows["family"] or rows["order"]
        return float(np.mean([x[2] for x in scored])) if scored else 0.0

    temperature = max(TEMPERATURES["similarity"], key=lambda tt: accuracy(votes_at(tt)))
    rows = votes_at(temperature)
    t_family, false_novel, missed = best_threshold(np.array(present), np.array(absent))
    logistic, rates = {}, {}
    for r in RANKS:
        if r in PHOTO_RANKS and rows[r]:
            v = np.array(rows[r])
            logistic[r] = _fit_logistic(v[:, :2], v[:, 2].astype(int))
            rates[r] = {"n": len(rows[r]), "top_vote_accuracy": round(float(v[:, 2].mean()), 4)}
        else:
            logistic[r] = list(_UNCALLED)
    rates["family_absent"] = {"false_novel": false_novel, "missed_novel": missed,
                              "n_present": len(present), "n_absent": len(absent)}
    # the Assigner's "species" threshold flags novelty; for photos it is the family's
    threshold = {"species": max(t_family, _NEVER), "bin_uri": _ALWAYS_ABSENT}
    return {"similarity": {"threshold": threshold, "temperature": temperature, "logistic": logistic, "rates": rates},
            "ranks": list(PHOTO_RANKS), "n_photos": len(truth)}


def _voting_taxonomy(t: Taxonomy) -> Taxonomy:
    """A photo reference known only to order votes for "family unknown" rather than not at all,
    so that e.g. bee photos (no family label) do not leave the family vote to ant photos."""
    return replace(t, family=UNKNOWN_FAMILY) if t.order and not t.family else t


def _photo_call(call: Call) -> Call:
    """Keep only the ranks photos are calibrated for; "family unknown" is no family call."""
    ranks = {r: (call.ranks[r] if r in PHOTO_RANKS and call.ranks[r].name != UNKNOWN_FAMILY
                 else RankCall(r, "", call.ranks[r].confidence if r in PHOTO_RANKS else 0.0)) for r in RANKS}
    novel_rank = call.novel_rank if call.novel_rank in PHOTO_RANKS else ""
    return Call(ranks, novel=bool(novel_rank), novel_rank=novel_rank)


class ImageIdentifier:
    """Identifies photos (PIL images) against a library; ``match`` is the importer's hook."""

    modality = "image"

    def __init__(self, library: ReferenceLibrary, encoder, k: int = TOP_K,
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE):
        self.library, self.encoder, self.k = library, encoder, k
        if library.count("image"):
            library.check_encoder(encoder)
            raw = library.meta.get(CALIBRATION_KEY)
            if not raw:
                raise LibraryError(f"{library.path.name}: its photo references are not calibrated "
                                   "(rebuild with `bioscan library build --images`)")
            calibration, self.reference_modality = json.loads(raw), "image"
        else:
            dna = library.model_for("dna")
            aligned = encoder.pack.manifest.get("aligned_to", {})
            if dna is None:
                raise LibraryError(f"{library.path.name} has neither photo nor DNA references")
            if aligned.get("sha256") != dna["sha256"]:
                raise LibraryError(
                    f"image model {encoder.pack.ident} was aligned to DNA model {aligned.get('name', '?')} "
                    f"(sha256 {str(aligned.get('sha256', ''))[:12]}…), but {library.path.name} was built with "
                    f"{dna['name']} (sha256 {dna['sha256'][:12]}…); add photo references with "
                    "`bioscan library build --images` to identify photos against it")
            calibration = encoder.pack.manifest.get("calibration")
            if not calibration:
                raise ModelPackError(f"image model {encoder.pack.ident} has no calibration for photo calls")
            self.reference_modality = "dna"
        self.refs = library.references(self.reference_modality)
        self.vote_taxonomy = [_voting_taxonomy(t) for t in self.refs.taxonomy]
        self.index = self.refs.index
        center = encoder.pack.manifest.get("aligned_to", {}).get("center")
        if self.reference_modality == "dna" and center:  # photos live in the library-centred DNA space
            from engine.search import ExactIndex

            self.index = ExactIndex(centred(self.refs.matrix, np.asarray(center, dtype=np.float32)))
        self.assigner = Assigner(calibration, min_confidence=min_confidence)

    def match(self, images: Sequence, progress: ProgressCallback = None,
              embeddings: np.ndarray | None = None) -> list[tuple[Call, list[Match]] | BioscanError]:
        """Calls (order and family) and ranked matches for 8-bit RGB PIL images, one per image.

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
        sims, pos = self.index.search(emb[good], self.k)
        for row, q in enumerate(good):
            tax = [self.refs.taxonomy[c] for c in pos[row]]
            votes = [self.vote_taxonomy[c] for c in pos[row]]
            call = _photo_call(self.assigner.assign(Candidates(votes, sims[row], "similarity")))
            out[q] = (call, [Match(self.refs.record_ids[c], tax[i], float(sims[row][i]))
                             for i, c in enumerate(pos[row][:REPORTED_MATCHES])])
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
               progress: ProgressCallback = None, batch: int = 64) -> tuple[int, list[tuple[str, str]]]:
    """Embed labelled photos (those with at least an order) into the library; recalibrate.

    Returns (added, skipped as (specimen id, reason)).
    """
    added, skipped = 0, []
    usable = []
    for p in photos:
        if not p.taxonomy.order:
            skipped.append((p.specimen_id, "no order in the labels table"))
        else:
            usable.append(p)
    side = encoder.preprocess.decode_side
    for start in range(0, len(usable), batch):
        chunk, images = [], []
        for p in usable[start: start + batch]:
            try:
                images.append(check_photo(p.path, min_side=side)[0])
                chunk.append(p)
            except BioscanError as exc:
                skipped.append((p.specimen_id, str(exc)))
        if chunk:
            failures: dict[int, Exception] = {}
            emb = encoder.embed(images, failures=failures)
            skipped.extend((chunk[i].specimen_id, str(_photo_failure(exc))) for i, exc in failures.items())
            added += library.add((ReferenceRecord(p.specimen_id, p.taxonomy, e, None, source=p.path.name)
                                  for i, (p, e) in enumerate(zip(chunk, emb)) if i not in failures), encoder)
        report(progress, min(start + batch, len(usable)), len(usable), f"added {added} photo references")
    if added:
        calibrate_photo_library(library)
    return added, skipped


def calibrate_photo_library(library: ReferenceLibrary) -> dict:
    """Leave-one-out calibration of photo calls on the library's photo references."""
    refs = library.references("image")
    cal = calibrate_photo_calls(refs.matrix, refs.taxonomy, refs.matrix, refs.taxonomy, exclude_self=True)
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
                                  call=f.call, matches=f.matches, qc=qc))
    return out
