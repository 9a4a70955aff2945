"""Atomic small-file writes: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path


def public_file_mode() -> int:
    """The mode a plain ``open()`` would give a new file now (``mkstemp`` makes it 0600)."""
    return 0o666 & ~current_umask()


def current_umask() -> int:
    """The process's umask, read without changing it.

    ``os.umask`` can only read the mask by setting another one, and every thread's new files get
    the other one meanwhile; Linux reports the mask in ``/proc/self/status``. Elsewhere: the mask
    this module found when imported (read once then, under a lock).
    """
    return _umask_from_proc() if _UMASK_AT_IMPORT is None else _UMASK_AT_IMPORT


def _umask_from_proc() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_at_import() -> int | None:
    """None where ``/proc`` tells it (read it each time then), else the mask now."""
    if _umask_from_proc() is not None:
        return None
    with _LOCK:
        umask = os.umask(0o077)  # the strict mask for the instant, should another thread create a file
        os.umask(umask)
    return umask


_LOCK = threading.Lock()
_UMASK_AT_IMPORT = _umask_at_import()


def write_json_atomic(path: str | Path, data) -> None:
    """Write ``data`` as indented JSON to ``path`` through a temp file and rename."""
    path = Path(path)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, ensure_ascii=False)
            stream.write("\n")
        os.chmod(temp_name, public_file_mode())
        os.replace(temp_name, path)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
