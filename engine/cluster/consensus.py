"""A cluster's consensus taxonomy from its members' identification calls."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from engine.records import RANKS, Call, Taxonomy


@dataclass(frozen=True)
class Consensus:
    """What most members of a cluster were called, coarse to fine, down to the first rank without a majority."""

    taxonomy: Taxonomy
    rank: str  # the finest rank with a majority ("" when not even the order has one)
    agreement: float  # fraction of members called that name at ``rank``
    novel_fraction: float  # fraction of members called novel


def consensus_taxonomy(calls: Sequence[Call | None], labels: Sequence[int],
                       min_agreement: float = 0.5) -> dict[int, Consensus]:
    """Per cluster id (noise -1 excluded): the names a strict majority (> min_agreement) of members share.

    A member without a call (None) counts against every name; a rank is only filled while
    every coarser rank is, so the consensus never skips a rank.
    """
    labels = np.asarray(labels)
    out: dict[int, Consensus] = {}
    for cid in sorted(int(c) for c in np.unique(labels) if c >= 0):
        members = [calls[i] for i in np.flatnonzero(labels == cid)]
        names: dict[str, str] = {}
        rank, agreement = "", 0.0
        for r in RANKS:
            counted = Counter(c.name(r) for c in members if c is not None and c.name(r))
            if not counted:
                break
            name, count = counted.most_common(1)[0]
            if count / len(members) <= min_agreement:
                break
            names[r], rank, agreement = name, r, count / len(members)
        novel = sum(1 for c in members if c is not None and c.novel) / len(members)
        out[cid] = Consensus(Taxonomy(**names), rank, agreement, novel)
    return out
