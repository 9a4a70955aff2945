"""Objects with big arrays between processes: pickled, with the arrays' memory in memory-mapped files.

Pickle protocol 5 hands every contiguous numpy buffer to a callback instead of copying it into
the pickle stream. Buffers of :data:`INBAND_BYTES` or more are written once into a file of their
own in a folder on a RAM-backed file system (``/dev/shm`` where there is room), and the receiver
maps that file as the array's memory (``numpy.memmap``) and unlinks it at once: the mapping
lives as long as the array, the name does not outlive the transfer, and no copy of the array
travels through the pipe. Small arrays (geometry, thresholds) stay in the pickle.

An array wrapped in :class:`Shared` (an image a dock sends with every click) is written once per
folder and kept there while the array lives (at most :data:`SHARED_KEPT` per folder): the jobs
that use it again send only its file's name, and the receiver maps the file read-only.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import tempfile
import threading
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Buffers smaller than this travel inside the pickle stream.
INBAND_BYTES = 1 << 16
_SHM = Path("/dev/shm")
_SHM_ROOM = 1 << 30   # use /dev/shm only with at least 1 GiB free (containers often give it 64 MB)
#: How many :class:`Shared` arrays a folder keeps written (the oldest file goes first).
SHARED_KEPT = 4
_KEPT: dict[str, list[tuple[weakref.ref, str]]] = {}   # folder -> (array, its file), newest last
_KEPT_LOCK = threading.Lock()


class Shared:
    """An array to send by reference: written once into a backend's folder, reused by later jobs.

    The array is known by identity (a weak reference), so it must not change in place while it is
    shared; a new array (a new image layer, or a layer's new data) is written afresh. Where no
    transfer happens (the in-process backend), ``numpy.asarray(shared)`` is the array itself.
    """

    def __init__(self, array: np.ndarray):
        self.array = array

    def __array__(self, dtype=None, copy=None):
        return self.array if dtype is None else self.array.astype(dtype)


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

    stream = io.BytesIO()
    pickler = pickle.Pickler(stream, protocol=5, buffer_callback=out_of_band)
    pickler.persistent_id = lambda item: _shared_id(item, folder) if isinstance(item, Shared) else None
    try:
        pickler.dump(obj)
    except BaseException:
        discard(Packed(b"", files))
        raise
    return Packed(stream.getvalue(), files)


def unpack(packed: Packed):
    """The object :func:`pack` packed; its arrays are writable maps of the files, which are unlinked
    (a :class:`Shared` array arrives as a read-only map of its kept file)."""
    buffers = []
    for path, nbytes in packed.files:
        buffers.append(np.memmap(path, dtype=np.uint8, mode="r+", shape=(nbytes,)))
        _unlink(path)
    unpickler = pickle.Unpickler(io.BytesIO(packed.payload), buffers=buffers)
    unpickler.persistent_load = _open_shared
    return unpickler.load()


def _shared_id(shared: Shared, folder: Path) -> tuple:
    """The reference that travels for ``shared``: its kept file (written now if it has none)."""
    array = shared.array
    with _KEPT_LOCK:
        kept = _KEPT.setdefault(str(folder), [])
        path = next((p for ref, p in kept if ref() is array), None)
        if path is None:
            path = str(folder / f"shared-{uuid.uuid4().hex}.buf")
            with open(path, "wb") as stream:
                stream.write(np.ascontiguousarray(array).data)
            kept.append((weakref.ref(array), path))
            live = [entry for entry in kept if entry[0]() is not None]
            for _, old in [entry for entry in kept if entry[0]() is None] + live[:-SHARED_KEPT]:
                _unlink(old)   # a job that maps it keeps its mapping
            kept[:] = live[-SHARED_KEPT:]
    return ("shared", path, array.dtype.str, array.shape)


def _open_shared(reference: tuple) -> np.ndarray:
    _, path, dtype, shape = reference
    if not shape or 0 in shape:
        return np.zeros(shape, dtype)   # a zero-size file cannot be mapped
    return np.memmap(path, dtype=np.dtype(dtype), mode="r", shape=tuple(shape))


def discard(packed: Packed | None) -> None:
    """Remove the files of a transfer that will not be unpacked (a cancelled or failed job)."""
    for path, _ in packed.files if packed is not None else ():
        _unlink(path)


def remove_folder(folder: Path | None) -> None:
    """Remove ``folder`` with every buffer file in it (its :class:`Shared` arrays included)."""
    if folder is not None:
        with _KEPT_LOCK:
            _KEPT.pop(str(folder), None)
        shutil.rmtree(folder, ignore_errors=True)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:   # Windows keeps a mapped file: the folder goes when the backend closes
        pass
