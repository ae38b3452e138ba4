"""What a FASTA header says: the record's id and, where given, its taxon, marker and accession.

Three header styles are read (docs/formats.md):
- BOLD: ``>GBCOU2225-13|Apion frumentarium|COI-5P|KF123456`` (processid|taxon|marker|accession;
  fields may be empty, a BIN ``BOLD:AAA1234`` may be among them)
- NCBI/GenBank: ``>MN123456.1 Apion frumentarium voucher X cytochrome oxidase subunit I (COI) gene,
  partial cds; mitochondrial`` (and the older ``>gi|123|gb|MN123456.1| ...``): the id is the
  accession, the species the two words after it when they read as a binomial, the marker
  recognised from the description
- anything else: the id is the first word; the rest is kept as the description
"""
from __future__ import annotations

import re
from typing import NamedTuple

from engine.records import Taxonomy

# markers read as the COI-5P barcode region: BOLD's code, and GenBank's COI (region not stated)
ACCEPTED_MARKERS = frozenset({"COI-5P", "COI"})

_ACCESSION = re.compile(r"^(?:[A-Z]{1,2}_?\d{5,8}|[A-Z]{4,6}\d{8,10})(?:\.\d+)?$")
_BIN = re.compile(r"^BOLD:[A-Z]{3}\d{4}$")
_TAXON = re.compile(r"^[A-Z][a-z]+(?:-[a-z]+)?(?: [^|]+)?$")
_EPITHET = re.compile(r"^[a-z][a-z-]+$")
_OPEN_NOMENCLATURE = frozenset({"sp", "spp", "cf", "aff", "nr", "gr", "nov", "indet"})
# marker codes that are not all capitals or digits (the rest are told by their shape)
_MIXED_CASE_MARKERS = frozenset({"matk", "rbcl", "rbcla", "trnh-psba", "psba-trnh", "trnl", "wnt1"})
_NCBI_DATABASES = frozenset({"gb", "emb", "dbj", "ref", "tpg", "tpe", "tpd"})

# (pattern in a GenBank description, marker); the first match wins, so COI comes before COII
_DESCRIBED_MARKERS: tuple[tuple[re.Pattern, str], ...] = tuple((re.compile(p, re.I), m) for p, m in (
    (r"oxidase (?:subunit |sub-unit )?(?:I|1)(?![I\d])|\bCOX?1\b|\bCOI\b|\bCO1\b", "COI"),
    (r"oxidase (?:subunit |sub-unit )?(?:II|2)(?![I\d])|\bCOX?2\b|\bCOII\b", "COII"),
    (r"oxidase (?:subunit |sub-unit )?(?:III|3)\b|\bCOX?3\b|\bCOIII\b", "COIII"),
    (r"cytochrome b\b|\bcytb\b|\bcob\b", "CYTB"),
    (r"NADH dehydrogenase subunit (\d)|\bND(\d)\b", "ND"),
    (r"\b12S\b", "12S"), (r"\b16S\b", "16S"), (r"\b18S\b", "18S"), (r"\b28S\b", "28S"),
    (r"internal transcribed spacer|(?-i:\bITS\d?\b)", "ITS"),
    (r"elongation factor 1", "EF1-alpha"),
    (r"\bmatK\b|maturase K", "matK"), (r"\brbcL\b|ribulose", "rbcL"),
    (r"complete genome|mitochondrion, complete|mitochondrial genome", "mitogenome"),
))


class FastaHeader(NamedTuple):
    id: str
    taxonomy: Taxonomy | None
    marker: str  # "" when the header names none
    accession: str
    extra: dict[str, str]  # "description": the full title


def parse_fasta_header(title: str) -> FastaHeader:
    """The id, taxonomy, marker and accession a FASTA title (the line after '>') gives."""
    title = title.strip()
    extra = {"description": title}
    first = title.split(None, 1)[0] if title else ""
    if "|" in first:
        fields = [f.strip() for f in title.split("|")]
        if fields[0] == "gi" and len(fields) >= 4 and fields[2] in _NCBI_DATABASES:
            return _genbank(fields[3], fields[4] if len(fields) > 4 else "", extra)
        if fields[0] in _NCBI_DATABASES and len(fields) >= 2:
            return _genbank(fields[1], fields[2] if len(fields) > 2 else "", extra)
        return _bold(fields, extra)
    if _ACCESSION.match(first):
        return _genbank(first, title[len(first):], extra)
    return FastaHeader(strip_id(first), None, "", "", extra)


def strip_id(ident: str) -> str:
    """An id without surrounding whitespace or invisible marks (BOM, zero-width space)."""
    return ident.strip().strip("\ufeff\u200b\u2060").strip()


def _bold(fields: list[str], extra: dict[str, str]) -> FastaHeader:
    ident = strip_id(fields[0])
    taxon = marker = accession = bin_uri = ""
    for f in fields[1:]:
        if not f:
            continue
        if _BIN.match(f) and not bin_uri:
            bin_uri = f
        elif _ACCESSION.match(f) and not accession:
            accession = f
        elif _looks_like_marker(f) and not marker:
            marker = f.upper() if f.lower() not in _MIXED_CASE_MARKERS else f
        elif _TAXON.match(f) and not taxon:
            taxon = f
    tax = taxonomy_from_name(taxon)
    if bin_uri:
        tax = Taxonomy(**{**(tax.as_dict() if tax else {}), "bin_uri": bin_uri})
    return FastaHeader(ident, tax, marker, accession, extra)


def _looks_like_marker(field: str) -> bool:
    if " " in field or len(field) > 16:
        return False
    if field.lower() in _MIXED_CASE_MARKERS:
        return True
    letters = [c for c in field if c.isalpha()]
    return bool(letters) and (all(c.isupper() for c in letters) or any(c.isdigit() for c in field))


def _genbank(accession: str, description: str, extra: dict[str, str]) -> FastaHeader:
    words = description.split()
    tax = taxonomy_from_name(" ".join(words[:2])) if words else None
    return FastaHeader(accession, tax, marker_from_description(description), accession, extra)


def marker_from_description(description: str) -> str:
    """The marker a GenBank description names ("COI", "CYTB", "16S", ...), "" when none."""
    for pattern, marker in _DESCRIBED_MARKERS:
        m = pattern.search(description)
        if m:
            if marker == "ND":
                return "ND" + next(g for g in m.groups() if g)
            return marker
    return ""


def taxonomy_from_name(name: str) -> Taxonomy | None:
    """The ranks a taxon name gives: "Genus species" -> genus and species; "Genus sp." -> the
    genus; a single name by its ending (-idae family, -inae subfamily), a known order, or else a
    genus; None for no name or a rank the Taxonomy has no field for (tribe -ini, superfamily -oidea)."""
    words = [w for w in name.split() if not (w.startswith("(") and w.endswith(")"))]  # a subgenus
    if not words or not words[0][:1].isupper():
        return None
    head = words[0]
    if len(words) >= 2:
        epithet = words[1].rstrip(".").lower()
        if _EPITHET.match(words[1]) and epithet not in _OPEN_NOMENCLATURE:
            return Taxonomy(genus=head, species=f"{head} {words[1]}")
        if epithet in _OPEN_NOMENCLATURE and not head.endswith(("idae", "inae")) and not _is_order(head):
            return Taxonomy(genus=head)
    if not head.isalpha():
        return None
    if head.endswith("idae"):
        return Taxonomy(family=head)
    if head.endswith("inae"):
        return Taxonomy(subfamily=head)
    if _is_order(head):
        return Taxonomy(order=head)
    if head.endswith(("ini", "oidea")):
        return None  # a tribe or superfamily
    if len(words) == 1 or words[1].rstrip(".").lower() in _OPEN_NOMENCLATURE:
        return Taxonomy(genus=head)
    return None


def _is_order(name: str) -> bool:
    """A known arthropod order, or a vertebrate order by its ending (Passeriformes). Other order
    names cannot be told from genera by their form (Spodoptera is a genus, Chiroptera an order)."""
    from engine.export.dwc import _HIGHER  # the orders the engine knows (their phylum and class)

    return name in _HIGHER or name.endswith("iformes")
