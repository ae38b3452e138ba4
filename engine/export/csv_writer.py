"""CSV output that spreadsheets open safely.

Cells starting with = + - @ (or tab/CR) would run as formulas in Excel/LibreOffice; they
are prefixed with an apostrophe (OWASP's advice). Numbers are written as numbers. Text
that is not valid Unicode (an undecodable file name's bytes) is written backslash-escaped.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from engine.atomic import atomic_output

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)) or value is None:
        return "" if value is None else value
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_csv(path: str | Path, columns: Sequence[str], rows: Iterable[Mapping[str, object]]) -> int:
    """Write rows atomically (engine.atomic) so a crash never leaves half a file."""
    n = 0
    with atomic_output(path) as tmp, tmp.open("w", newline="", encoding="utf-8",
                                                         errors="backslashreplace") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for row in rows:
            w.writerow([safe_cell(row.get(c, "")) for c in columns])
            n += 1
    return n
