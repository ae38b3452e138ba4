"""Identify specimens against a reference library: QC, embed, search, re-rank, assign."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from engine.align import pair_alignments, pair_identities
from engine.assign import Assigner, Candidates, DEFAULT_MIN_CONFIDENCE
from engine.errors import LibraryError
from engine.kmer_index import EVIDENCE_SPECIES  # species whose closest reference a result shows, as BOLD does
from engine.library import ReferenceLibrary
from engine.models.dna_encoder import DnaEncoder
from engine.photo_labels import PHOTO_CALL_COLUMNS, photo_call_cells
from engine.progress import ProgressCallback, report
from engine.qc import check_barcode
from engine.records import RANKS, REPORTED_MATCHES, Barcode, BarcodeQC, Call, Match, RecordError

# queries matched at once: the k-mer search's (queries, references) counts and the alignments'
# pairs grow with it, so a run of any length stays within a bounded memory
IDENTIFY_BATCH = 2048
TOP_K = 50  # candidates a query's calls are voted among; a result keeps REPORTED_MATCHES of them
# the evidence behind a call, per record: the top identity (%) and, for each of the best species, its closest
# reference, that reference's identity (%) and the overlap of the alignment (bp)
EVIDENCE_COLUMNS = ["top_identity", *(f"{c}_{n}" for n in range(1, EVIDENCE_SPECIES + 1)
                                      for c in ("species", "ref", "identity", "overlap"))]

RESULT_COLUMNS = [
    "specimen_id", "source_file", "modality", "status",
    "order", "family", "genus", "species", "bin_uri", "confidence",
    "order_confidence", "family_confidence", "genus_confidence", "species_confidence", "bin_confidence",
    "top_match_id", "top_match_species", "top_similarity", "identity", "novel", "novel_rank",
    "qc_flags", "sequence_length", "error", *EVIDENCE_COLUMNS, "top_match_library",
    *PHOTO_CALL_COLUMNS,  # a photo call's reason and what it was matched against (engine.photo_labels)
]


def _evidence_positions(taxonomy: Sequence) -> list[int]:
    """Positions (in a ranked list) of the first reference of each of the best EVIDENCE_SPECIES species."""
    out, seen = [], set()
    for p, t in enumerate(taxonomy):
        if t.species and t.species not in seen:
            seen.add(t.species)
            out.append(p)
            if len(out) == EVIDENCE_SPECIES:
                break
    return out


def species_evidence(matches: Sequence[Match]) -> list[Match]:
    """The closest reference of each of the best EVIDENCE_SPECIES species (matches ranked best first)."""
    return [matches[p] for p in _evidence_positions([m.taxonomy for m in matches])]


def _percent(fraction: float | None):
    return "" if fraction is None else round(100.0 * fraction, 2)


def evidence_cells(matches: Sequence[Match]) -> dict[str, object]:
    """EVIDENCE_COLUMNS of a result whose ranked matches are ``matches``."""
    row: dict[str, object] = {c: "" for c in EVIDENCE_COLUMNS}
    if matches:
        row["top_identity"] = _percent(matches[0].identity)
    for n, m in enumerate(species_evidence(matches), start=1):
        row.update({f"species_{n}": m.taxonomy.species, f"ref_{n}": m.record_id,
                    f"identity_{n}": _percent(m.identity), f"overlap_{n}": "" if m.overlap is None else m.overlap})
    return row


def _kept_positions(taxonomy: Sequence, n: int) -> list[int]:
    """Positions of the candidates a result keeps: the best ``n``, with the closest reference of
    each evidence species among them even when it ranks lower (the best ones make room)."""
    keep = set(_evidence_positions(taxonomy))
    p = 0
    while len(keep) < min(n, len(taxonomy)):
        keep.add(p)
        p += 1
    return sorted(keep)


def unframed_error(qc: BarcodeQC | None, call: Call | None) -> str:
    """The error for a barcode with no reading frame and no close reference; "" otherwise.

    The encoder does not recognise non-COI input: 300 real barcodes with their bases shuffled got
    order calls for 84 %, family for 75 % and genus for 48 % against the bundled library. With no
    reading frame (QC) and no reference close enough to name a species (``call.novel``) the
    sequence is not identified. A frame-shifted real barcode that still matches its species
    closely is kept (flagged): BOLD's GBCL33349-19, 9 stops, is Coccinella septempunctata at
    cosine 0.95.
    """
    if qc is None or call is None or "no_reading_frame" not in qc.flags or not call.novel:
        return ""
    return (f"no reading frame ({qc.stop_codons} stop codons in the best frame of either strand, table 5) "
            "and no close reference: not a COI-5P barcode (another marker, a contaminant or chimera) "
            "or full of sequencing errors; not identified")


@dataclass
class Identification:
    """The result for one specimen record: a call, or an error."""

    specimen_id: str
    source_file: str
    modality: str
    call: Call | None = None
    matches: list[Match] = field(default_factory=list)
    qc: BarcodeQC | None = None
    error: str = ""
    embedding: np.ndarray | None = None  # the query's unit embedding (for clustering), not a CSV column
    photo_call: Call | None = None  # a "dna+image" row's photo call: its reason and references are the row's

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        return "novel" if self.call and self.call.novel else "ok"

    def as_row(self) -> dict[str, object]:
        row: dict[str, object] = {c: "" for c in RESULT_COLUMNS}
        row.update(specimen_id=self.specimen_id, source_file=self.source_file, modality=self.modality,
                   status=self.status, error=self.error)
        if self.qc is not None:
            row["qc_flags"] = ";".join(self.qc.flags)
            row["sequence_length"] = self.qc.length
        if self.call is not None:
            for rank in RANKS:
                row[rank] = self.call.name(rank)
                key = "bin_confidence" if rank == "bin_uri" else f"{rank}_confidence"
                row[key] = round(self.call.confidence(rank), 4)
            finest = self.call.shown_rank
            row["confidence"] = round(self.call.confidence(finest), 4) if finest else 0.0
            row["novel"] = self.call.novel
            row["novel_rank"] = self.call.novel_rank
        if self.matches:
            top = self.matches[0]
            row["top_match_id"] = top.record_id
            row["top_match_species"] = top.taxonomy.species
            row["top_similarity"] = round(top.similarity, 4)
            row["identity"] = "" if top.identity is None else round(top.identity, 4)
            row["top_match_library"] = top.library
        row.update(evidence_cells(self.matches))
        photo = self.photo_call or self.call  # a PhotoCall (engine.identify_image) says why and against what
        row.update(photo_call_cells(getattr(photo, "references", ""), getattr(photo, "reason", "")))
        return row


class DnaIdentifier:
    """Identifies cleaned barcodes against a library with the encoder that built it."""

    def __init__(self, library: ReferenceLibrary | Sequence[ReferenceLibrary], encoder: DnaEncoder, k: int = TOP_K,
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE, use_sequences: bool = True,
                 progress: ProgressCallback = None):
        """``library``: one library, or several searched as one (engine.library_set), calibrated on their union."""
        self.libraries = [library] if isinstance(library, ReferenceLibrary) else list(library)
        for lib in self.libraries:
            lib.check_encoder(encoder)
            if not lib.calibration:
                raise LibraryError(f"{lib.path.name} has not been calibrated (run `bioscan library calibrate`)")
        self.library = self.libraries[0]
        self.encoder = encoder
        if len(self.libraries) == 1:
            self.refs = self.library.references("dna")
            calibration = self.library.calibration
        else:
            from engine.library_set import CombinedReferences

            self.refs = CombinedReferences(self.libraries)
            calibration = self.refs.calibration(progress)
        self.k = k
        self.assigner = Assigner(calibration, min_confidence=min_confidence)
        self.use_identity = (use_sequences and "identity" in calibration
                             and all(lib.has_sequences for lib in self.libraries))

    def _library_name(self, pos: int) -> str:
        return "" if len(self.libraries) == 1 else self.refs.library_of(pos).path.name

    def match(self, sequences: Sequence[str], progress: ProgressCallback = None,
              embeddings: np.ndarray | None = None) -> list[tuple[Call, list[Match]]]:
        """Calls and ranked matches for QC-cleaned sequences (embedded here unless ``embeddings`` are given)."""
        if not sequences:
            return []
        emb = self.encoder.embed(sequences, progress=progress) if embeddings is None else embeddings
        sims, pos = self.refs.index.search(emb, self.k)
        refs_seq = self.refs.sequences if self.use_identity else None
        genus_scores = None
        if refs_seq is None:  # similarity alone: genera judged by their prototypes (engine.assign)
            genus_scores = self.refs.genus_prototypes().scores(
                emb, [[self.refs.taxonomy[c].genus for c in pos[q]] for q in range(len(sequences))])
        aligned = self._align_candidates(sequences, emb, pos, progress) if refs_seq is not None else None
        out = []
        evidence: list[tuple[int, int, int]] = []  # (query, position in its matches, reference)
        taxonomy, record_ids = self.refs.taxonomy, self.refs.record_ids
        for q, seq in enumerate(sequences):
            cand, sim = pos[q], sims[q]
            if aligned is not None:
                cand, ident = aligned[q]
                sim = self.refs.matrix[cand] @ emb[q]
                order = np.lexsort((-sim, -ident))  # identity first, similarity breaks ties
                cand, sim, ident = cand[order], sim[order], ident[order]
                scores, kind = ident, "identity"
            else:
                ident, scores, kind = None, sim, "similarity"
            cand_list, sim_list = cand.tolist(), sim.tolist()  # Python scalars: 50 matches a query add up
            tax = [taxonomy[c] for c in cand_list]
            call = self.assigner.assign(Candidates(tax, scores, kind, genus_scores[q] if genus_scores else None))
            idents = [None] * len(cand_list) if ident is None else ident.tolist()
            kept = _kept_positions(tax, REPORTED_MATCHES)
            matches = [Match(record_ids[cand_list[p]], tax[p], sim_list[p], idents[p],
                             library=self._library_name(cand_list[p])) for p in kept]
            if refs_seq is not None:
                evidence.extend((q, n, cand_list[kept[n]]) for n in _evidence_positions([tax[p] for p in kept]))
            out.append((call, matches))
            if q % 200 == 0:
                report(progress, q, len(sequences), "assigning taxonomy")
        report(progress, len(sequences), len(sequences), "assigning taxonomy")
        if evidence:  # the overlap of each evidence match: 3 alignments a query again, with edlib's locations
            _, overlaps = pair_alignments([(sequences[q], refs_seq[c] or "") for q, _, c in evidence],
                                          progress=progress, message="measuring overlaps")
            for (q, n, _), overlap in zip(evidence, overlaps.tolist()):
                out[q][1][n] = out[q][1][n]._replace(overlap=overlap)
        return out

    def _align_candidates(self, sequences: Sequence[str], emb: np.ndarray, pos: np.ndarray,
                          progress: ProgressCallback) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, (candidates, identities) to vote among: as few alignments as the call needs
        (engine.kmer_index.after_first): the first FIRST_ALIGNED embedding candidates, then the rest
        of them, a few for the evidence, or instead a wider search's candidates (``_widen``)."""
        from engine.kmer_index import FIRST_ALIGNED, after_first

        refs_seq, taxonomy = self.refs.sequences, self.refs.taxonomy
        m = min(FIRST_ALIGNED, pos.shape[1])
        first = pair_identities([(seq, refs_seq[c] or "") for seq, cand in zip(sequences, pos[:, :m].tolist())
                                 for c in cand], progress=progress, message="aligning to candidates")
        first = first.reshape(len(sequences), m)
        more, to_widen = [], []
        for q in range(len(sequences)):
            rest = after_first(first[q], [taxonomy[c].species for c in pos[q, :m]],
                               [taxonomy[c].species for c in pos[q, m:]])
            if rest is None:
                to_widen.append(q)
                rest = []
            more.append(pos[q, m:][rest])
        more_idents = pair_identities([(sequences[q], refs_seq[c] or "") for q, cands in enumerate(more)
                                       for c in cands.tolist()], progress=progress, message="aligning to candidates")
        out, start = [], 0
        for q, cands in enumerate(more):
            out.append((np.concatenate([pos[q, :m], cands]),
                        np.concatenate([first[q], more_idents[start: start + len(cands)]])))
            start += len(cands)
        for q, widened in self._widen([sequences[q] for q in to_widen], emb[to_widen], [out[q] for q in to_widen],
                                      progress):
            out[to_widen[q]] = widened
        return out

    def _widen(self, sequences: Sequence[str], emb: np.ndarray, aligned: list[tuple[np.ndarray, np.ndarray]],
               progress: ProgressCallback) -> Iterable[tuple[int, tuple[np.ndarray, np.ndarray]]]:
        """Queries whose first embedding candidates hold nothing at WIDEN_BELOW identity, searched
        again: by shared k-mers (engine.kmer_index) where the library has a k-mer index, else by a
        WIDE_SHORTLIST-long embedding shortlist (a library too large for a k-mer index: the search
        index answers it at any size). (query, (candidates, identities)), the k best of both lists."""
        from engine.kmer_index import WIDE_SHORTLIST, top_shared, widen

        if not sequences:
            return []
        index = self.refs.kmer_index()
        if index is not None:
            shared = index.shared(sequences, progress=progress)
            extra = [top_shared(shared, j, self.k) for j in range(len(sequences))]
        else:
            extra = list(self.refs.index.search(emb, WIDE_SHORTLIST)[1])
        extra = [cands[~np.isin(cands, have)] for (have, _), cands in zip(aligned, extra)]  # aligned already
        refs_seq = self.refs.sequences
        extra_idents = pair_identities([(sequences[j], refs_seq[c] or "") for j, cands in enumerate(extra)
                                        for c in cands.tolist()], progress=progress,
                                       message="aligning to more candidates")
        out, start = [], 0
        for j, ((have, idents), cands) in enumerate(zip(aligned, extra)):
            out.append((j, widen(have, idents, cands, extra_idents[start: start + len(cands)], self.k)))
            start += len(cands)
        return out

    def identify(self, records: Iterable[Barcode | RecordError],
                 progress: ProgressCallback = None) -> list[Identification]:
        """One Identification per record, in input order; bad records become error rows."""
        results: list[Identification] = []
        todo: list[int] = []
        for rec in records:
            if isinstance(rec, RecordError):
                results.append(Identification(rec.specimen_id, rec.source_file, "dna", error=rec.message))
                continue
            qc = check_barcode(rec.sequence)
            results.append(Identification(rec.specimen_id, rec.source_file, "dna", qc=qc, error=qc.error or ""))
            if qc.ok:
                todo.append(len(results) - 1)
        batches = range(0, len(todo), IDENTIFY_BATCH)
        for b, start in enumerate(batches):
            part = todo[start: start + IDENTIFY_BATCH]
            step = progress if len(batches) == 1 or progress is None else (
                lambda done, total, msg, b=b: progress(done, total, f"batch {b + 1} of {len(batches)}: {msg}"))
            sequences = [results[i].qc.sequence for i in part]
            emb = self.encoder.embed(sequences, progress=step)
            for n, (i, (call, matches)) in enumerate(zip(part, self.match(sequences, step, embeddings=emb))):
                results[i].error = unframed_error(results[i].qc, call)
                if not results[i].error:
                    results[i].call, results[i].matches, results[i].embedding = call, matches, emb[n]
        return results


def open_identifier(library_path: str | Path | Sequence[str | Path] | None = None,
                    model_path: str | Path | None = None, device: str = "auto",
                    min_confidence: float = DEFAULT_MIN_CONFIDENCE, use_sequences: bool = True,
                    progress: ProgressCallback = None) -> DnaIdentifier:
    """A DnaIdentifier over a library (default: the bundled one), or several searched as one,
    with the model that built it.

    Without ``model_path`` the model pack is the bundled one named by the library's record
    of the model that embedded it, in the precision it was embedded with.
    """
    from engine.library_set import check_same_model, library_paths
    from engine.models.pack import load_pack
    from engine.resources import default_model_path

    libraries = [ReferenceLibrary.open(p) for p in library_paths(library_path)]
    built_with = libraries[0].model_for("dna")
    if built_with is None:
        raise LibraryError(f"{libraries[0].path.name} has no DNA references")
    check_same_model(libraries)
    pack = load_pack(model_path or default_model_path("dna"))
    encoder = DnaEncoder(pack, precision=built_with["precision"], device=device)
    return DnaIdentifier(libraries if len(libraries) > 1 else libraries[0], encoder, min_confidence=min_confidence,
                         use_sequences=use_sequences, progress=progress)



