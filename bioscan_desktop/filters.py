"""The table's filter: engine.project.SpecimenFilter plus what the GUI needs that it lacks yet.

SpecimenFilter (issue 3) has no confidence range and no "these ids" clause; both are added
here as extra WHERE clauses on columns list_specimens already sorts on (``confidence``,
``id``), so the project's own count/list/tree methods keep doing the SQL.
TODO(issue 3): move min/max confidence and ids into SpecimenFilter and delete this module.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from engine.project import CALL_RANKS, SpecimenFilter


@dataclass
class TableFilter(SpecimenFilter):
    min_confidence: float | None = None
    max_confidence: float | None = None  # exclusive: "below 0.5" finds calls to review
    ids: list[int] | None = None  # e.g. the specimens lassoed on the cluster map
    ids_label: str = field(default="", compare=False)  # how the GUI names that selection

    def where(self) -> tuple[str, list[Any]]:
        where, args = super().where()
        clauses = [where.removeprefix(" WHERE ")] if where else []
        if self.min_confidence is not None:
            clauses.append("confidence >= ?")
            args.append(self.min_confidence)
        if self.max_confidence is not None:
            clauses.append("(confidence < ? OR confidence IS NULL)")
            args.append(self.max_confidence)
        if self.ids is not None:
            clauses.append("id IN (SELECT value FROM json_each(?))")  # one parameter, any number of ids
            args.append(json.dumps([int(i) for i in self.ids]))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def describe(self) -> str:
        """What the filter shows, in words, for the filter bar ('' when everything)."""
        parts = []
        if self.taxon:  # coarse to fine, whatever order the dict arrived in (Qt sorts QVariantMap keys)
            parts.append(" › ".join(self.taxon[r] or "(not called)" for r in CALL_RANKS if r in self.taxon))
        if self.ids is not None:
            parts.append(self.ids_label or f"{len(self.ids):,} selected specimens")
        return "; ".join(parts)
