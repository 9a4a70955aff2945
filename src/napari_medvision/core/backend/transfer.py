"""Objects with big arrays between processes: pickled, with the arrays' memory in memory-mapped files.

Pickle protocol 5 hands every contiguous numpy buffer to a callback instead of copying it into
the pickle stream. Buffers of :data:`INBAND_BYTES` or more are written once into a file of their
own in a folder on a RAM-backed file system (``/dev/shm`` where there is room), and the receiver
maps that file as the array's memory (``numpy.memmap``) and unlinks it at once: the mapping
lives as long as the array, the name does not outlive the transfer, and no copy of the array
travels through the pipe. Small arrays (geometry, thresholds) stay in the pickle.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Buffers smaller than this travel inside the pickle stream.
INBAND_BYTES = 1 << 16
_SHM = Path("/dev/shm")
_SHM_ROOM = 1 << 30   # use /dev/shm only with at least 1 GiB free (containers often give it 64 MB)


@dataclass
class Packed:
    """A pickle stream and the files holding its out-of-band buffers (path, byte count)."""

    payload: bytes
    files: list[tuple[str, int]] = field(default_factory=list)


def transfer_folder() -> Path:
    """A new private folder for the buffer files, on RAM-backed storage when it has room."""
    root = None
    if _SHM.is_dir() and os.access(_SHM, os.W_OK):
        stats = os.statvfs(_SHM)
        if stats.f_bavail * stats.f_frsize >= _SHM_ROOM:
            root = str(_SHM)
    return Path(tempfile.mkdtemp(prefix="medvision-transfer-", dir=root))


def pack(obj, folder: Path) -> Packed:
    """``obj`` pickled, its big contiguous arrays written to files in ``folder`` (one copy each)."""
    files: list[tuple[str, int]] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        view = buffer.raw()
        if view.nbytes < INBAND_BYTES:
            return True   # in the pickle stream
        path = folder / f"{uuid.uuid4().hex}.buf"
        with open(path, "wb") as stream:
            stream.write(view)
        files.append((str(path), view.nbytes))
        return False

    try:
        payload = pickle.dumps(obj, protocol=5, buffer_callback=out_of_band)
    except BaseException:
        discard(Packed(b"", files))
        raise
    return Packed(payload, files)


def unpack(packed: Packed):
    """The object :func:`pack` packed; its arrays are writable maps of the files, which are unlinked."""
    buffers = []
    for path, nbytes in packed.files:
        buffers.append(np.memmap(path, dtype=np.uint8, mode="r+", shape=(nbytes,)))
        _unlink(path)
    return pickle.loads(packed.payload, buffers=buffers)


def discard(packed: Packed | None) -> None:
    """Remove the files of a transfer that will not be unpacked (a cancelled or failed job)."""
    for path, _ in packed.files if packed is not None else ():
        _unlink(path)


def remove_folder(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:   # Windows keeps a mapped file: the folder goes when the backend closes
        pass
