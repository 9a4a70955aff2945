"""Detect truncated NIfTI files, which ITK reads silently with the missing voxels left zero."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import nibabel
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from ..errors import UnreadableFileError

_CHUNK = 1 << 20


def check_nifti_complete(path: Path) -> None:
    """Raise unless the file holds every voxel byte its header promises (NIfTI-1 or -2, as nibabel reads it).

    Files nibabel does not take for NIfTI are left to ITK's own errors.

    Raises:
        UnreadableFileError: the file (or its gzip stream) ends early.
    """
    try:  # the stream first: a gzip that ends early is truncated, however much of the header survived
        available = _gzip_length(path) if path.name.lower().endswith(".gz") else path.stat().st_size
    except (EOFError, OSError, zlib.error):
        raise UnreadableFileError(f"'{path.name}' is truncated: its compressed data ends early") from None
    try:
        voxels = nibabel.load(path).dataobj  # an ArrayProxy: the header is read, the voxels are not
    except (ImageFileError, HeaderDataError, EOFError, OSError):
        return
    expected = int(voxels.offset) + int(np.prod(voxels.shape)) * np.dtype(voxels.dtype).itemsize
    if available < expected:
        raise UnreadableFileError(
            f"'{path.name}' is truncated: the header promises {expected} bytes, the file holds {available}"
        )


def _gzip_length(path: Path) -> int:
    """Bytes in the decompressed stream, read through in 1 MiB pieces (nothing kept)."""
    total = 0
    with gzip.open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            total += len(chunk)
    return total
