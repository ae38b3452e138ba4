"""Barcode quality control: clean a raw sequence and say what was wrong with it.

COI-5P is protein coding, so a genuine barcode reads through without stop codons in
one frame of the invertebrate mitochondrial code (NCBI table 5). That frame also tells
the strand: a reverse-complemented barcode has stops in all three forward frames.
"""
from __future__ import annotations

import re
from typing import Iterable, Iterator

import numpy as np

from engine.records import Barcode, BarcodeQC, RecordError

IUPAC_DNA = set("ACGTURYSWKMBDHVN")
GAP_CHARS = "-.~"
MIN_LENGTH = 100  # shorter than this is too little to identify from
# Longer than any COI barcode: the full COI gene is ~1,540 bp and a whole mitogenome ~16 kb; a
# longer "barcode" is a contig, a genome assembly or a file joined onto one line, which the encoder
# would silently truncate. Identify, import and library build all refuse it here.
MAX_SEQUENCE_LENGTH = 10_000
BIN_MIN_LENGTH = 500  # BOLD assigns BINs only to barcodes of at least 500 bp
AMBIGUOUS_WARN = 0.01
AMBIGUOUS_MAX = 0.5
GENETIC_CODE = 5  # NCBI: invertebrate mitochondrial
# A COI barcode reads through in one frame; a pseudogene (NUMT) or a sequencing error leaves a
# few stops. From this many stops in the best frame of both strands on, the sequence is flagged
# `no_reading_frame`: of the 38,963 real barcodes in the shared data 1 has >= 5 (15 have 1, 14 have
# 2-4), while 92.9 % of the same barcodes with their bases shuffled do. What identification then
# does with it: engine.identify.unframed_error.
NO_READING_FRAME_STOPS = 5

_COMPLEMENT = str.maketrans("ACGTURYSWKMBDHVN", "TGCAAYRSWMKVHDBN")
_BASE_CODE = np.full(256, 4, dtype=np.uint8)
for _i, _b in enumerate(b"ACGT"):
    _BASE_CODE[_b] = _i


def _stop_codon_mask() -> np.ndarray:
    """Per codon id a*25 + b*5 + c (base codes 0-3, 4 for anything else): is it a stop codon.
    Ids holding a 4 are never stops, so codons with N need no separate test."""
    from Bio.Data import CodonTable

    table = CodonTable.unambiguous_dna_by_id[GENETIC_CODE]
    mask = np.zeros(125, dtype=bool)
    for codon in table.stop_codons:
        a, b, c = (b"ACGT".index(ch.encode()) for ch in codon)
        mask[a * 25 + b * 5 + c] = True
    return mask


_STOP_MASK = _stop_codon_mask()


def count_stops(seq: str) -> list[int]:
    """Stop codons (table 5) in each of the three forward frames; codons with N are skipped."""
    codes = _BASE_CODE[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]
    if len(codes) < 3:
        return [0, 0, 0]
    # the codon starting at each position, in uint8 (at most 124): a build counts millions
    ids = codes[:-2] * np.uint8(25) + codes[1:-1] * np.uint8(5) + codes[2:]
    return np.bincount(np.flatnonzero(_STOP_MASK[ids]) % 3, minlength=3).tolist()


def reverse_complement(seq: str) -> str:
    return seq.translate(_COMPLEMENT)[::-1]


def sequence_length(raw: str) -> int:
    """Characters of ``raw`` that are not whitespace, counted without copying it."""
    return len(raw) - sum(raw.count(c) for c in " \t\n\r\v\f")


def too_long_error(length: int, max_length: int = MAX_SEQUENCE_LENGTH) -> str:
    """The QC error of a sequence of ``length`` characters above ``max_length``."""
    return (f"{length:,} bp: longer than any COI barcode (max {max_length:,} bp); "
            "is this a genome assembly or several sequences joined?")


def overlong_as_errors(records: Iterable[Barcode | RecordError],
                       max_length: int = MAX_SEQUENCE_LENGTH) -> Iterator[Barcode | RecordError]:
    """``records`` as read, each barcode longer than ``max_length`` replaced by a RecordError
    (check_barcode's message) as it passes, so that a list of them holds no such sequence."""
    for rec in records:
        if isinstance(rec, Barcode) and len(rec.sequence) > max_length:
            length = sequence_length(rec.sequence)
            if length > max_length:
                rec = RecordError(rec.specimen_id, rec.source_file, too_long_error(length, max_length))
        yield rec


def check_barcode(raw: str, max_length: int = MAX_SEQUENCE_LENGTH) -> BarcodeQC:
    """Clean one barcode and report its QC flags, or an error for non-DNA or overlong input.

    A sequence longer than ``max_length`` is refused before any copy of it is made.
    """
    if len(raw) > max_length:
        length = sequence_length(raw)
        if length > max_length:
            return BarcodeQC("", length, length, 0.0, error=too_long_error(length, max_length))
    text = re.sub(r"\s+", "", raw).upper()
    raw_length = len(text)
    if not text:
        return BarcodeQC("", 0, 0, 0.0, error="empty sequence")
    flags: list[str] = []
    stripped = text.translate({ord(c): None for c in GAP_CHARS})
    if len(stripped) != len(text):
        flags.append("gaps_removed")
    stripped = stripped.replace("?", "N").replace("U", "T")
    bad = sorted(set(stripped) - IUPAC_DNA)
    if bad:
        shown = "".join(bad[:8])
        hint = " (looks like a protein sequence)" if set(bad) & set("EFILPQ") else ""
        return BarcodeQC("", raw_length, 0, 0.0, error=f"not a DNA sequence: contains {shown!r}{hint}")
    seq = stripped.strip("N")
    if len(seq) != len(stripped):
        flags.append("ends_trimmed")
    acgt = sum(seq.count(b) for b in "ACGT")
    length = len(seq)
    ambiguous = 1.0 - acgt / length if length else 1.0
    if acgt < MIN_LENGTH:
        return BarcodeQC(
            "", raw_length, length, ambiguous,
            flags=flags, error=f"too short: {acgt} unambiguous bases (minimum {MIN_LENGTH})",
        )
    if ambiguous > AMBIGUOUS_MAX:
        return BarcodeQC(
            "", raw_length, length, ambiguous, flags=flags,
            error=f"mostly ambiguous bases ({ambiguous:.0%} not A/C/G/T)",
        )
    forward = count_stops(seq)
    reversed_ = False
    if min(forward) > 0:  # no open frame forward: is the other strand better?
        rc = reverse_complement(seq)
        reverse = count_stops(rc)
        reversed_ = min(reverse) < min(forward)
    if reversed_:
        seq, stops = rc, min(reverse)
        flags.append("reverse_complemented")
    else:
        stops = min(forward)
    if stops:
        flags.append("stop_codons")  # likely pseudogene (NUMT) or sequencing error
    if stops >= NO_READING_FRAME_STOPS:
        flags.append("no_reading_frame")  # not COI-like at all, or full of frame shifts
    if length < BIN_MIN_LENGTH:
        flags.append("short")
    if ambiguous > AMBIGUOUS_WARN:
        flags.append("ambiguous")
    return BarcodeQC(seq, raw_length, length, ambiguous, reversed_, stops, flags)
