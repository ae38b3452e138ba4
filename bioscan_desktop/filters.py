"""The table's filter: engine.project.SpecimenFilter (which does all the SQL) plus how the GUI names it."""
from __future__ import annotations

from dataclasses import dataclass, field

from engine.project import CALL_RANKS, SpecimenFilter


@dataclass
class TableFilter(SpecimenFilter):
    ids_label: str = field(default="", compare=False)  # how the GUI names an id selection (e.g. a lasso)

    def describe(self) -> str:
        """What the filter shows, in words, for the filter bar ('' when everything)."""
        parts = []
        if self.taxon:  # coarse to fine, whatever order the dict arrived in (Qt sorts QVariantMap keys)
            parts.append(" › ".join(self.taxon[r] or "(not called)" for r in CALL_RANKS if r in self.taxon))
        if self.ids is not None:
            parts.append(self.ids_label or f"{len(self.ids):,} selected specimens")
        return "; ".join(parts)
