"""Detect truncated NIfTI files, which ITK reads silently with the missing voxels left zero."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

from ..errors import UnreadableFileError

_CHUNK = 1 << 20


def check_nifti_complete(path: Path) -> None:
    """Raise unless the file holds every voxel byte its header promises.

    Raises:
        UnreadableFileError: the file (or its gzip stream) ends early.
    """
    compressed = path.name.lower().endswith(".gz")
    try:
        if compressed:
            with gzip.open(path, "rb") as stream:
                header = stream.read(548)
                available = len(header) + _count_rest(stream)
        else:
            with open(path, "rb") as stream:
                header = stream.read(548)
            available = path.stat().st_size
    except (EOFError, OSError, zlib.error):
        raise UnreadableFileError(f"'{path.name}' is truncated: its compressed data ends early") from None
    expected = _expected_bytes(header)
    if expected is not None and available < expected:
        raise UnreadableFileError(
            f"'{path.name}' is truncated: the header promises {expected} bytes, the file holds {available}"
        )


def _count_rest(stream) -> int:
    total = 0
    while chunk := stream.read(_CHUNK):
        total += len(chunk)
    return total


def _expected_bytes(header: bytes) -> int | None:
    """Voxel offset plus voxel bytes from a NIfTI-1 or NIfTI-2 header (None if unrecognised)."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            dims = struct.unpack(endian + "8h", header[40:56])
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            dims = struct.unpack(endian + "8q", header[16:80])
            offset = struct.unpack(endian + "q", header[168:176])[0]
            break
    else:
        return None
    if not 1 <= dims[0] <= 7 or bitpix <= 0:
        return None
    voxels = 1
    for n in dims[1 : dims[0] + 1]:
        voxels *= max(int(n), 1)
    return max(offset, 348) + voxels * bitpix // 8
