"""Checking a user's override names against the reference library's taxonomy.

A typo in an override ("Carabidea") would otherwise become a new family in the project's tree
and in every export. ``unknown_names`` lists each name the library does not hold at its rank,
with the close names it does hold (difflib) and the ranks where the name is known instead; the
GUI shows them and stores a confirmed unknown name as unverified (Project.annotate's
``unverified_names``), and the exports mark it.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from engine.project.schema import TAXON_TREE_RANKS

if TYPE_CHECKING:
    from engine.library import ReferenceLibrary

SUGGESTIONS = 3
CLOSENESS = 0.75  # difflib ratio: "Carabidea" ~ "Carabidae" is 0.89, "Apidae" ~ "Aphididae" 0.8


@dataclass
class UnknownName:
    rank: str
    name: str
    suggestions: list[str] = field(default_factory=list)  # close names the library has at this rank
    known_as: list[str] = field(default_factory=list)  # other ranks where the library has this name

    def message(self) -> str:
        text = f"{self.name}: not a {self.rank} in the library"
        if self.known_as:
            text += f" (it is a {' and a '.join(self.known_as)})"
        if self.suggestions:
            text += f"; did you mean {' or '.join(self.suggestions)}?"
        return text


class LibraryTaxonomy:
    """The names a reference library holds at each rank, read once (a few distinct-name queries)."""

    def __init__(self, names: Mapping[str, set[str]]):
        self.names = {rank: set(names.get(rank, ())) for rank in TAXON_TREE_RANKS}
        self._folded = {rank: {n.casefold(): n for n in ns} for rank, ns in self.names.items()}

    @classmethod
    def of(cls, library: "ReferenceLibrary") -> "LibraryTaxonomy":
        return cls(library.taxon_names(TAXON_TREE_RANKS))

    def unknown(self, taxonomy: Mapping[str, str]) -> list[UnknownName]:
        """The names of ``taxonomy`` (rank -> name; BIN and empty names are not checked) the library
        does not hold at that rank, coarsest rank first. A species counts as known when its genus
        (the first word) is one the library holds."""
        out = []
        for rank in TAXON_TREE_RANKS:
            name = (taxonomy.get(rank) or "").strip()
            if not name or name in self.names[rank]:
                continue
            if rank == "species" and name.split()[0] in self.names["genus"]:
                continue  # a species the library lacks in a genus it has ("Bombus sp. 3", a new record)
            same_but_case = self._folded[rank].get(name.casefold())
            suggestions = [same_but_case] if same_but_case else difflib.get_close_matches(
                name, self.names[rank], n=SUGGESTIONS, cutoff=CLOSENESS)
            known_as = [r for r in TAXON_TREE_RANKS if r != rank and name in self.names[r]]
            out.append(UnknownName(rank, name, suggestions, known_as))
        return out


def unknown_names(library: "ReferenceLibrary | LibraryTaxonomy", taxonomy: Mapping[str, str]) -> list[UnknownName]:
    """The names of ``taxonomy`` (rank -> name) not in the library at that rank, with close suggestions."""
    checker = library if isinstance(library, LibraryTaxonomy) else LibraryTaxonomy.of(library)
    return checker.unknown(taxonomy)
