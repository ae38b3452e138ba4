"""SQLite files by path: URIs that name exactly that file, and what a file is, read without writing.

SQLite reads a ``file:`` URI's ``?`` as the start of the query, ``#`` as a fragment and ``%xx``
as an escaped byte, so a path pasted into ``f"file:{path}?mode=ro"`` opens another file (or
none) when the name holds one of them: ``plate#42.db`` becomes ``plate``, ``%41.db`` becomes
``A.db``. ``sqlite_uri`` percent-escapes every byte of the absolute path but ``/`` and the
unreserved characters, so any name the file system accepts opens the same file.

``sqlite_kind`` tells a reference library from a project (and both from other files) by
their tables, opening the file read-only, so that a library given as ``--project`` (or the
reverse) is refused with a message naming what the file is, before anything writes to it.
"""
from __future__ import annotations

import os
import sqlite3
import sys
import urllib.parse
from pathlib import Path

from engine.errors import BioscanError

SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_S = 30.0  # a second process holding the write lock (two imports, a build and a reader) waits this long

KINDS = ("missing", "empty", "not-sqlite", "corrupt", "library", "project", "other")
_LIBRARY_TABLES = {"meta", "refs"}  # engine.library's schema
_PROJECT_TABLES = {"meta", "specimens"}  # engine.project's schema
_WHAT = {"library": "a reference library", "project": "a BIOSCAN project", "other": "an SQLite database",
         "not-sqlite": "not an SQLite database", "empty": "an empty file", "corrupt": "a damaged SQLite database"}


def sqlite_uri(path: str | Path, readonly: bool = False, immutable: bool = False) -> str:
    """A ``file:`` URI (for ``sqlite3.connect(..., uri=True)``) naming exactly ``path``.

    readonly adds ``mode=ro``; immutable adds ``immutable=1`` too (no locks, no -wal/-shm files:
    for files on read-only media; the caller promises nobody writes the file meanwhile).
    """
    absolute = Path(os.path.abspath(os.fspath(path)))
    text = absolute.as_posix() if sys.platform == "win32" else os.fsencode(absolute)
    quoted = (urllib.parse.quote(text, safe="/") if isinstance(text, str)
              else urllib.parse.quote_from_bytes(text, safe="/"))
    if not quoted.startswith("/"):  # Windows: C:/x -> /C:/x
        quoted = "/" + quoted
    params = ["mode=ro", "immutable=1"] if immutable else (["mode=ro"] if readonly else [])
    return "file://" + quoted + ("?" + "&".join(params) if params else "")


def connect(path: str | Path, readonly: bool = False, immutable: bool = False, **kwargs) -> sqlite3.Connection:
    """sqlite3.connect to exactly ``path`` (see sqlite_uri), waiting up to BUSY_TIMEOUT_S for locks."""
    kwargs.setdefault("timeout", BUSY_TIMEOUT_S)
    conn = sqlite3.connect(sqlite_uri(path, readonly=readonly, immutable=immutable), uri=True, **kwargs)
    conn.execute(f"PRAGMA busy_timeout = {int(kwargs['timeout'] * 1000)}")
    return conn


def _tables(path: Path, wal_mode: bool) -> set[str]:
    """The table names, read without writing: a WAL-mode file with no pending -wal is read
    ``immutable`` (``mode=ro`` would create its -shm and -wal files), any other read-only,
    falling back to immutable where read-only mode cannot open it (read-only media)."""
    wal = path.with_name(path.name + "-wal")
    pending = wal.exists() and wal.stat().st_size > 0
    last: sqlite3.Error | None = None
    for immutable in ((True, False) if wal_mode and not pending else (False, True)):
        try:
            conn = connect(path, readonly=True, immutable=immutable, timeout=2.0)
        except sqlite3.Error as exc:
            last = exc
            continue
        try:
            return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            last = exc
        finally:
            conn.close()
    raise last if last is not None else sqlite3.OperationalError("unreadable")


def holds_no_tables(path: str | Path) -> bool:
    """True for an empty file or an SQLite file without tables (e.g. a copy of a WAL database made
    before its first checkpoint, without its -wal file); read without writing."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            header = fh.read(100)
    except OSError:
        return False
    if not header:
        return True
    try:
        return not _tables(path, wal_mode=header[18:19] == b"\x02")
    except sqlite3.DatabaseError:
        return False


def sqlite_kind(path: str | Path) -> str:
    """What ``path`` is, one of KINDS: "library" (engine.library), "project" (engine.project),
    "other" (another SQLite database), "missing", "empty" (0 bytes), "not-sqlite", "corrupt"."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            header = fh.read(100)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return "missing"
    if not header:
        return "empty"
    if not header.startswith(SQLITE_HEADER):
        return "not-sqlite"
    try:
        tables = _tables(path, wal_mode=header[18:19] == b"\x02")
    except sqlite3.DatabaseError:
        return "corrupt"
    if _LIBRARY_TABLES <= tables:
        return "library"
    if _PROJECT_TABLES <= tables:
        return "project"
    return "other"


def is_reference_library(path: str | Path) -> bool:
    return sqlite_kind(path) == "library"


def is_project(path: str | Path) -> bool:
    return sqlite_kind(path) == "project"


def wrong_kind_message(path: str | Path, kind: str, expected: str) -> str:
    """One line saying what ``path`` is when it should have been ``expected`` ("library" | "project")."""
    name = Path(path).name
    want = "a reference library" if expected == "library" else "a project"
    if kind == "missing":
        return f"{path}: no such file"
    if kind == "corrupt":
        how = ("rebuild it with `bioscan library build`" if expected == "library"
               else "restore it from a backup, or import the folders again into a new project")
        return f"{path} is damaged (not a readable SQLite database): {how}"
    if kind == "empty":
        return f"{path} is an empty file (left by an interrupted run?), not {want}: delete it and run again"
    hint = {"library": "give it as --library", "project": "give it as --project"}.get(kind, "check the path")
    return f"{name} is {_WHAT[kind]}, not {want} ({hint})"


def require_kind(path: str | Path, expected: str, allow_missing: bool = False) -> str:
    """Raise BioscanError naming what ``path`` is unless it is ``expected`` ("library" | "project");
    an absent file passes when ``allow_missing`` (it is about to be created). Returns the kind."""
    kind = sqlite_kind(path)
    if kind == expected or (allow_missing and kind == "missing"):
        return kind
    raise BioscanError(wrong_kind_message(path, kind, expected))
