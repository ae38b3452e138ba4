"""Outputs written whole or not at all.

Every writer (CSV, Darwin Core archive, report, reference library) writes into a temp file
beside its output and renames it over the output only once complete (``atomic_output``):
a crash, a kill or a full disk leaves the old output as it was, or no output, never half a
file. The temp file's name carries the writing process's id; a temp file whose process is
gone (killed: nothing could clean up) is deleted by the next write of the same output, so
leftovers never block or accumulate.

An output in a folder that does not exist is an error before any work starts
(``check_output_folder``), for every writer: a mistyped folder should not become a new one.
"""
from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
import socket
import sqlite3
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from engine.errors import BioscanError

PARTIAL = ".partial"
STALE_ELSEWHERE_S = 24 * 3600  # a temp file another machine is writing (a shared folder) is left this long
_NAME_CHARS = 40  # of the output's name kept in the temp file's (4 bytes each at most: well under NAME_MAX)


def check_output_folder(path: str | Path, database: bool = False) -> Path:
    """``path`` as a Path; BioscanError unless its folder exists and can be written, and it is
    not a folder, nor (unless the output is itself a ``database``) a library or project it would destroy."""
    from engine.sqlite_paths import sqlite_kind

    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise BioscanError(f"the folder {folder} does not exist: create it, or choose another output path")
    if path.is_dir():
        raise BioscanError(f"{path} is a folder: give the output a file name")
    if not os.access(folder, os.W_OK):
        raise BioscanError(f"cannot write into the folder {folder} (permission denied): choose another output path")
    kind = "" if database else sqlite_kind(path)
    if kind in ("library", "project"):
        what = "a reference library" if kind == "library" else "a BIOSCAN project"
        raise BioscanError(f"{path} is {what}: writing this output over it would destroy it; "
                           "choose another file name")
    return path


def _temp_prefix(path: Path) -> str:
    return f".{path.name[:_NAME_CHARS]}."


def _host_tag() -> str:
    """This machine, in a temp file's name: a process id means nothing on another host (shared folders)."""
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]


def _writer_gone(tag: str, mtime: float) -> bool:
    """Whether the writer of a temp file named with ``tag`` (HOST-PID) has ended."""
    host, _, pid = tag.partition("-")
    if host != _host_tag() or not pid.isdigit():  # another machine's: only once it is a day old
        return time.time() - mtime > STALE_ELSEWHERE_S
    if int(pid) == os.getpid():
        return False
    return _process_gone(int(pid))


def _process_gone(pid: int) -> bool:
    if sys.platform == "win32":  # os.kill would terminate it; an open temp file cannot be deleted there anyway
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def remove_stale_temp_files(path: str | Path) -> list[Path]:
    """Delete the temp files (and their SQLite journals) that killed writers of ``path`` left."""
    path = Path(path)
    prefix, removed = _temp_prefix(path), []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and PARTIAL in name):
            continue
        tag = name[len(prefix):].split(PARTIAL)[0].rsplit("-", 1)[0]  # HOST-PID of HOST-PID-RANDOM.partial
        try:
            if not _writer_gone(tag, os.stat(path.parent / name).st_mtime):
                continue
            os.unlink(path.parent / name)
            removed.append(path.parent / name)
        except OSError:
            pass
    return removed


def temp_path(path: Path) -> Path:
    """A fresh temp file name beside ``path``: .NAME.HOST-PID-RANDOM.partial."""
    return path.with_name(f"{_temp_prefix(path)}{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}{PARTIAL}")


def _discard(tmp: Path) -> None:
    for p in (tmp, tmp.with_name(tmp.name + "-journal")):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
        except OSError:
            pass


def _fsync(path: Path, directory: bool = False) -> None:
    if directory and sys.platform == "win32":
        return
    fd = os.open(path, (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if directory else os.O_RDWR)
    try:
        os.fsync(fd)
    except OSError:
        if not directory:  # some file systems cannot sync a folder; the file itself must be on disk
            raise
    finally:
        os.close(fd)


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the user's quota) is full."""
    return getattr(exc, "errno", None) in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)) or (
        isinstance(exc, sqlite3.OperationalError) and "full" in str(exc))


def write_error_message(path: Path, exc: BaseException) -> str:
    """One line on why ``path`` could not be written, and what is left of it."""
    left = "the old file is unchanged" if path.exists() else "nothing was written"
    code = getattr(exc, "errno", None)
    if disk_full(exc):
        try:
            free = f" ({shutil.disk_usage(path.parent).free / 1e6:.1f} MB free)"
        except OSError:
            free = ""
        return f"no space left on the disk for {path}{free}: free some space, or write elsewhere; {left}"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {path}: {exc.strerror or exc} (choose another output folder); {left}"
    reason = getattr(exc, "strerror", None) or str(exc)
    return f"cannot write {path}: {reason}; {left}"


def _link_no_clobber(tmp: Path, path: Path) -> None:
    """Put ``tmp`` at ``path`` unless something is there already (created meanwhile by another process)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise BioscanError(f"{path} was created by another process meanwhile; nothing was replaced") from None
    except OSError:  # no hard links on this file system (FAT, some network shares): check, then rename
        if path.exists():
            raise BioscanError(f"{path} was created by another process meanwhile; nothing was replaced") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def place_file(tmp: Path, path: Path, replace: bool = True) -> None:
    """Put the complete file ``tmp`` at ``path`` in one step, synced to disk first: over what is
    there (``replace``), or only if nothing is (else BioscanError: another process made it meanwhile)."""
    _fsync(tmp)
    if replace:
        os.replace(tmp, path)
    else:
        _link_no_clobber(tmp, path)
    _fsync(path.parent, directory=True)


@contextmanager
def atomic_output(path: str | Path, replace: bool = True, database: bool = False) -> Iterator[Path]:
    """Yield a temp path beside ``path`` to write the whole output into; on success it becomes
    ``path`` (synced to disk first), on any error or interruption it is deleted.

    ``replace=False``: never overwrite a file that appeared at ``path`` meanwhile (two processes
    creating the same new library: the second gets an error, not a silent loss). ``database``:
    the output is a library, which may replace one (see check_output_folder). An OSError (or
    SQLite's "disk is full") while writing becomes a BioscanError naming the output.
    """
    path = check_output_folder(path, database=database)
    remove_stale_temp_files(path)
    tmp = temp_path(path)
    try:
        yield tmp
        place_file(tmp, path, replace)
    except (OSError, sqlite3.OperationalError) as exc:
        if isinstance(exc, sqlite3.OperationalError) and "full" not in str(exc) and "I/O" not in str(exc):
            _discard(tmp)
            raise
        message = write_error_message(path, exc)  # before the temp file goes: the free space it left
        _discard(tmp)
        raise BioscanError(message) from exc
    except BaseException:
        _discard(tmp)
        raise
