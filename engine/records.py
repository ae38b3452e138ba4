"""Plain data types that flow through the engine (no I/O, no heavy imports)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

# Ranks the engine calls, coarse to fine. "bin_uri" is the BOLD Barcode Index Number.
RANKS: tuple[str, ...] = ("order", "family", "genus", "species", "bin_uri")
LINNAEAN_RANKS: tuple[str, ...] = RANKS[:4]  # the BIN is a rank of calls, not of the taxonomy a call names
# Columns of a taxonomy as stored (subfamily is kept but not called).
TAXONOMY_FIELDS: tuple[str, ...] = ("order", "family", "subfamily", "genus", "species", "bin_uri")


@dataclass(frozen=True)
class Taxonomy:
    order: str = ""
    family: str = ""
    subfamily: str = ""
    genus: str = ""
    species: str = ""
    bin_uri: str = ""

    def get(self, rank: str) -> str:
        return getattr(self, rank)

    def as_dict(self) -> dict[str, str]:
        # not dataclasses.asdict: it deep-copies, and a build calls this for every reference
        return {name: getattr(self, name) for name in TAXONOMY_FIELDS}


@dataclass
class Barcode:
    """One DNA barcode record as read from a file (sequence not yet cleaned)."""

    specimen_id: str
    sequence: str
    source_file: str = ""
    taxonomy: Taxonomy | None = None  # known labels, e.g. from a reference table
    sampleid: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    # collection metadata as read (engine.io.tables.METADATA_COLUMNS): country, province, coord
    # ("lat,lon"), collection_date, collectors, identified_by, sampleid, museumid,
    # identification_rank, marker, accession; a key is absent when the file gives no value
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class RecordError:
    """A record that could not be read; it still becomes an output row."""

    specimen_id: str
    source_file: str
    message: str


@dataclass
class BarcodeQC:
    """Result of barcode QC: the cleaned sequence to encode, or an error."""

    sequence: str  # cleaned: upper case, gaps removed, ends trimmed, forward strand
    raw_length: int
    length: int
    ambiguous_fraction: float
    reverse_complemented: bool = False
    stop_codons: int = 0
    flags: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


REPORTED_MATCHES = 10  # matches a result keeps: the detail view's list, the project database's rows


class Match(NamedTuple):
    """One reference hit for a query. A named tuple, not a frozen dataclass: identify makes
    REPORTED_MATCHES per query, and a frozen dataclass costs ~2.5 us each to build."""

    record_id: str
    taxonomy: Taxonomy
    similarity: float  # cosine similarity of embeddings
    identity: float | None = None  # alignment identity (0..1) when both sequences are known
    overlap: int | None = None  # aligned length (bp) behind ``identity``, measured for the evidence matches
    library: str = ""  # the library the reference is from, when several are searched together


@dataclass(frozen=True)
class RankCall:
    rank: str
    name: str  # "" when the rank is left uncalled
    confidence: float


@dataclass
class Call:
    """A taxonomy call for one query: per-rank names with confidences, plus novelty."""

    ranks: dict[str, RankCall]
    novel: bool = False
    novel_rank: str = ""  # the coarsest rank at which the query looks new ("species", "genus", ...)

    def name(self, rank: str) -> str:
        rc = self.ranks.get(rank)
        return rc.name if rc else ""

    def confidence(self, rank: str) -> float:
        rc = self.ranks.get(rank)
        return rc.confidence if rc else 0.0

    @property
    def shown_rank(self) -> str:
        """The rank whose name and confidence a specimen's call shows: its finest called Linnaean
        rank (order .. species; "" when none). The BIN is shown beside it with its own confidence:
        a species called at 98 % in a BIN called at 57 % reads "species, 98 %"."""
        shown = ""
        for rank in LINNAEAN_RANKS:
            if self.name(rank):
                shown = rank
        return shown
