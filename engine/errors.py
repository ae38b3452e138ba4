"""Exceptions with messages meant for the user."""
from __future__ import annotations

import errno
import re


class BioscanError(Exception):
    """Base class: the message is shown to the user as is."""


class InputFormatError(BioscanError):
    """A file is not in any format the engine reads."""


class ModelPackError(BioscanError):
    """A model pack is missing, corrupt or incompatible."""


class LibraryError(BioscanError):
    """A reference library is missing, corrupt or built with another model."""


class TransientError(BioscanError):
    """A failure of the moment, not of the input (out of memory, disk full, an I/O error).

    An item that fails with it is not done: leave it to be tried again on the next run rather
    than storing the message as its permanent error. ``is_transient`` also recognises the
    underlying exceptions when they were not wrapped.
    """


# errnos that say "the machine, not the file": disk full, quota, I/O error, out of memory
TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM})
_SQLITE_TRANSIENT = frozenset({10, 13})  # SQLITE_IOERR, SQLITE_FULL (primary result codes)
_ALLOCATION_FAILURE = re.compile(r"allocat|bad_alloc|out of memory", re.IGNORECASE)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised ``from``, is worth retrying on the next run.

    True for TransientError, MemoryError, an OSError whose errno is in TRANSIENT_ERRNOS, an
    sqlite3 I/O or disk-full error and an onnxruntime memory-allocation failure; False for
    everything else (a bad file stays bad).
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (TransientError, MemoryError)):
            return True
        if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
            return True
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int) and (code & 0xFF) in _SQLITE_TRANSIENT:
            return True
        if type(exc).__module__.startswith("onnxruntime") and _ALLOCATION_FAILURE.search(str(exc)):
            return True
        exc = exc.__cause__
    return False
