"""The work file of a library build: the library in the making, beside its output, with its
record of progress, so that a build stopped by Ctrl-C, kill -9, a crash or a full disk resumes
where it stopped instead of embedding everything again.

``<out>.building`` is a library like any other, plus meta values written in the same
transaction as each batch of references (``ReferenceLibrary.add(meta=...)``): ``build.plan``
(each input's identity and the settings that decide the result), ``build.progress`` (per input,
the records consumed and, once read to its end, what reading it gave) and ``build.report``
(what was skipped, bounded). The same command run again skips each input's consumed records
without embedding them; a command whose inputs or settings differ is refused, naming what changed
(``--restart`` discards the work). The work file is held in SQLite's exclusive locking mode for
the whole build: a second build of the same output is refused while the first runs, and the
operating system releases the lock however the first ends.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import sqlite_utils

from engine.atomic import atomic_output, remove_stale_temp_files
from engine.errors import LibraryError
from engine.io import ReadStats
from engine.library import ReferenceLibrary
from engine.sqlite_paths import connect

WORK_SUFFIX = ".building"
PLAN_FORMAT = "1"
HEAD_BYTES = 1 << 20  # an input's identity hashes its first MB: a changed file is told without reading GBs
META_KEYS = ("build.plan", "build.progress", "build.report")
SETTINGS_SAID = {  # how an error names a setting that differs, and its value
    "model": ("the DNA model", lambda m: f"{m['name']}@{m['version']} {m['precision']} (sha256 {m['sha256'][:12]}…)"),
    "store_sequences": ("--no-sequences", lambda keep: "off" if keep else "on"),
    "add": ("--add", lambda add: "on" if add else "off"),
    "name": ("--name", repr),
    "batch_size": ("the batch size", str),
    "format": ("the work file's format", str),
}


def work_path(out: Path) -> Path:
    """Where the build of ``out`` keeps its work: ``out.building``."""
    return out.with_name(out.name + WORK_SUFFIX)


def work_files(out: Path) -> list[Path]:
    """The work file and what SQLite and the index keep beside it."""
    work = work_path(out)
    return [work, work.with_name(work.name + "-journal"), work.with_name(work.name + ".index")]


def discard_work(out: Path) -> None:
    """Delete the work of an earlier build of ``out`` (``--restart``); refused while a build runs."""
    work = work_path(out)
    if work.exists():
        _locked(work, out).close()  # a build running now holds it: refuse rather than pull it away
    for p in work_files(out):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


# ------------------------------------------------------------------------------- the plan
def input_identity(path: Path) -> dict:
    """What tells an input file apart from a changed one: absolute path, size, mtime, first MB's sha256."""
    st = os.stat(path)
    with open(path, "rb") as fh:
        head = hashlib.sha256(fh.read(HEAD_BYTES)).hexdigest()
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "head_sha256": head}


def output_identity(out: Path) -> dict:
    """The library ``--add`` extends, as it was when the work file was made from it."""
    st = os.stat(out)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def make_plan(files: list[Path], settings: dict, out: Path | None) -> dict:
    """What a build reads and the settings that decide its result; ``out`` is the library ``--add`` extends."""
    return {"settings": {"format": PLAN_FORMAT, **settings}, "inputs": [input_identity(f) for f in files],
            "out": output_identity(out) if out is not None else None}


def _when(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9))


def plan_changes(old: dict, new: dict) -> list[str]:
    """What differs between the plan of an interrupted build and this command's, in words."""
    changes = []
    for key in sorted(set(old["settings"]) | set(new["settings"])):
        was, now = old["settings"].get(key), new["settings"].get(key)
        if was != now:
            name, said = SETTINGS_SAID.get(key, (key, str))
            changes.append(f"{name} was {said(was) if was is not None else 'not set'}, "
                           f"now {said(now) if now is not None else 'not set'}")
    old_paths, new_paths = [i["path"] for i in old["inputs"]], [i["path"] for i in new["inputs"]]
    if old_paths != new_paths:
        changes.append(f"the input files were {', '.join(old_paths)}; now {', '.join(new_paths)}")
    else:
        for was, now in zip(old["inputs"], new["inputs"]):
            what = []
            if was["size"] != now["size"]:
                what.append(f"{was['size']:,} bytes, now {now['size']:,}")
            if was["mtime_ns"] != now["mtime_ns"]:
                what.append(f"modified {_when(was['mtime_ns'])}, now {_when(now['mtime_ns'])}")
            if was["head_sha256"] != now["head_sha256"] and not what:
                what.append("its first MB differs")
            if what:
                changes.append(f"{now['path']} changed ({'; '.join(what)})")
    if old["out"] != new["out"]:
        changes.append("the library being extended was changed by another process since the build started")
    return changes


def estimate_rows(path: Path) -> int:
    """Records in a barcode file, counted cheaply for the progress line: lines of a table (less
    its header), '>' lines of a FASTA file, '//' lines of a flat file; 0 (unknown) for a zip."""
    import gzip

    with open(path, "rb") as raw:
        magic = raw.read(2)
    if magic == b"PK":
        return 0
    n, mark = 0, None
    try:
        with (gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")) as fh:
            while chunk := fh.read(1 << 22):
                if mark is None:
                    head = chunk.lstrip()[:5]
                    mark = b"\n>" if head[:1] == b">" else b"\n//" if head in (b"LOCUS", b"ID   ") else b"\n"
                    n += mark == b"\n>"  # the first record has no newline before it
                n += chunk.count(mark)
    except (OSError, EOFError, ValueError):  # damaged: the reader says so; the count only guides the ETA
        pass
    return max(0, n - (mark == b"\n"))


# ------------------------------------------------------------------------- the progress
def stats_state(stats: ReadStats) -> dict:
    return {"read": stats.read, "errors": stats.errors, "skipped": dict(stats.skipped), "markers": dict(stats.markers)}


def stats_from_state(state: dict) -> ReadStats:
    return ReadStats(read=state["read"], errors=state["errors"], skipped=Counter(state["skipped"]),
                     markers=Counter(state["markers"]))


def rows_read(stats: ReadStats) -> int:
    """Rows (records) of a file the reader has gone through: read, damaged, or skipped as another marker."""
    return stats.read + stats.errors + sum(stats.skipped.values())


@dataclass
class InputProgress:
    """How far a build has committed one input."""

    items: int = 0  # records the reader yielded (barcodes and errors) that are committed
    rows: int = 0  # rows_read at that point
    stats: dict | None = None  # stats_state, once the file is read to its end

    @property
    def done(self) -> bool:
        return self.stats is not None


# ---------------------------------------------------------------------------- the work file
class WorkFile:
    """An open, locked work file: the library being built and what of it is committed."""

    def __init__(self, path: Path, library: ReferenceLibrary, estimates: list[int], inputs: list[InputProgress],
                 report: dict | None):
        self.path, self.library, self.estimates = path, library, estimates
        self.inputs = inputs  # committed progress, per input
        self.report = report  # the build's report (engine.build.BuildReport.state) as committed; None: nothing yet

    def rows_committed(self) -> int:
        return sum(i.rows for i in self.inputs)

    def rows_total(self) -> int:
        """The rows of all inputs (estimated; 0 when an input's count is unknown)."""
        return 0 if 0 in self.estimates else sum(self.estimates)

    def commit_meta(self, n: int, progress: InputProgress, report: dict) -> dict[str, str]:
        """The meta values recording input ``n`` committed to ``progress`` and the build's ``report``
        (stored in the transaction of a batch)."""
        inputs = [progress if k == n else p for k, p in enumerate(self.inputs)]
        return _progress_meta(self.estimates, inputs, report)

    def committed(self, n: int, progress: InputProgress) -> None:
        """Called once the transaction holding ``commit_meta(n, progress, ...)`` has committed."""
        self.inputs[n] = progress

    def finish(self) -> None:
        """Drop the record of progress and close: the library is complete."""
        self.library.drop_meta(META_KEYS)
        self.close()

    def close(self) -> None:
        self.library.close()


def _progress_meta(estimates: list[int], inputs: list[InputProgress], report: dict | None) -> dict[str, str]:
    return {"build.progress": json.dumps({"estimates": estimates, "inputs": [[p.items, p.rows, p.stats] for p in inputs]}),
            "build.report": json.dumps(report)}


def _locked(work: Path, out: Path) -> sqlite3.Connection:
    """A connection to ``work`` holding its exclusive lock (kept until it closes)."""
    conn = connect(work, timeout=0)
    try:
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")  # rolls back a killed build's unfinished batch (a hot journal)
        conn.commit()
    except sqlite3.OperationalError as exc:
        conn.close()
        if "locked" in str(exc) or "busy" in str(exc):
            raise LibraryError(f"another process meanwhile started building {out} (it holds {work.name}): "
                               "wait for it to finish, then run again") from None
        raise
    return conn


def open_work(out: Path, plan: dict, create: Callable[[Path], ReferenceLibrary]) -> WorkFile:
    """The locked work file of building ``out`` by ``plan``: the one an interrupted run of the same
    build left, or a new one made by ``create(temp path)`` (a new library, or a copy of the one
    ``--add`` extends) and put in place whole. LibraryError naming what changed when the one left
    was made for other inputs or settings."""
    work = work_path(out)
    remove_stale_temp_files(work)
    if not work.exists():
        estimates = [estimate_rows(Path(i["path"])) for i in plan["inputs"]]
        with atomic_output(work, replace=False, database=True) as tmp:
            lib = create(tmp)
            lib.set_meta({"build.plan": json.dumps(plan),
                          **_progress_meta(estimates, [InputProgress() for _ in plan["inputs"]], None)})
            lib.close()
    conn = _locked(work, out)
    library = ReferenceLibrary(work, sqlite_utils.Database(conn))
    restart = "run this command with --restart: it starts again"
    try:
        meta = library.meta
    except sqlite3.DatabaseError as exc:
        library.close()
        raise LibraryError(f"{work} is not a library build in progress ({exc}): {restart}") from exc
    if "build.plan" not in meta:
        library.close()
        raise LibraryError(f"{work} holds no record of its build (it was completed but not put in place, or "
                           f"made by another program): {restart}")
    changes = plan_changes(json.loads(meta["build.plan"]), plan)
    if changes:
        library.close()
        raise LibraryError(f"{work} holds an interrupted build of {out.name} that differs from this command: "
                           + "; ".join(changes) + f". To discard that work, {restart}")
    progress = json.loads(meta["build.progress"])
    inputs = [InputProgress(items, rows, stats) for items, rows, stats in progress["inputs"]]
    return WorkFile(work, library, progress["estimates"], inputs, json.loads(meta["build.report"]))
