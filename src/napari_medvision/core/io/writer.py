"""Write a volume with its exact geometry, atomically (temp file + rename)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .._atomic import public_file_mode
from ..errors import UnsupportedFormatError, WriteError
from ..volume import Volume
from ._itk import itk_reason

#: Single-file formats we write (a two-file .mhd/.nhdr could not be replaced atomically).
WRITE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha")


def compact_label_dtype(array: np.ndarray) -> np.ndarray:
    """The label map in the smallest integer type that holds its values unchanged."""
    if array.size == 0:
        return array.astype(np.uint8)
    low, high = int(array.min()), int(array.max())
    for dtype in (np.uint8, np.uint16, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return array.astype(dtype, copy=False)
    return array.astype(np.int64, copy=False)


def extension_of(path: Path, extensions: tuple[str, ...] = WRITE_EXTENSIONS) -> str:
    """The file ending of ``path`` among ``extensions`` (lower case).

    Raises:
        UnsupportedFormatError: naming the endings that are written.
    """
    name = path.name.lower()
    for ext in extensions:
        if name.endswith(ext):
            return ext
    raise UnsupportedFormatError(
        f"cannot write '{path.name}': use one of " + ", ".join(extensions)
    )


def check_destination(path: str | Path, extensions: tuple[str, ...] = WRITE_EXTENSIONS,
                      inputs: tuple[str | Path, ...] = ()) -> str:
    """Check, before any work, that a file could be written at ``path``; returns its ending.

    Args:
        path: the file to be written (it may exist: it would be replaced).
        extensions: endings accepted (default: the volume formats :func:`write_volume` writes).
        inputs: files the command reads, which it must not replace (the study).

    Raises:
        UnsupportedFormatError: an ending not in ``extensions``.
        WriteError: ``path`` is a folder, or its folder is missing, not a folder, or read-only, or
            it is one of ``inputs``.
    """
    path = Path(path)
    for source in inputs:
        if path.exists() and Path(source).is_file() and os.path.samefile(path, source):
            raise WriteError(f"cannot write '{path.name}': it is the input study, which is never overwritten; "
                             "give the output another file name")
    if path.is_dir():
        raise WriteError(f"cannot write '{path}': it is a folder; give a file name ending in "
                         + ", ".join(extensions))
    ext = extension_of(path, extensions)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        raise WriteError(f"cannot write '{path.name}': folder '{folder}' does not exist")
    if not folder.is_dir():
        raise WriteError(f"cannot write '{path.name}': '{folder}' is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise WriteError(f"cannot write '{path.name}': folder '{folder}' is read-only for you")
    return ext


def write_volume(volume: Volume, path: str | Path, *, labels: bool = False) -> Path:
    """Write ``volume`` to ``path`` with its spacing, origin and direction.

    The file appears complete or not at all: it is written to a temporary file
    in the same folder and renamed over ``path``.

    Args:
        volume: what to write.
        path: destination ending in ``.nii.gz``, ``.nii``, ``.nrrd`` or ``.mha``.
        labels: store as a label map in the smallest integer type.

    Raises:
        UnsupportedFormatError: unknown file ending.
        WriteError: missing or read-only folder, or ITK failed; nothing was changed.
    """
    path = Path(path)
    ext = check_destination(path)
    folder = path.parent if str(path.parent) else Path(".")
    array = volume.array
    if labels:
        if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.round(array)):
            raise WriteError("a label map must hold whole numbers")
        array = compact_label_dtype(array.astype(np.int64) if array.dtype == bool else array)
    image = Volume(array, volume.spacing, volume.origin, volume.direction,
                   {"dimension": volume.metadata.get("dimension")}).to_sitk(keep_2d=True)
    try:
        handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=ext, dir=folder)
        os.close(handle)
    except OSError as exc:
        raise WriteError(f"cannot write to folder '{folder}': {exc.strerror}") from None
    try:
        sitk.WriteImage(image, temp_name, useCompression=ext in (".nii.gz", ".nrrd", ".mha"))
        os.chmod(temp_name, public_file_mode())
        os.replace(temp_name, path)
    except (RuntimeError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else itk_reason(exc)
        raise WriteError(f"cannot write '{path.name}': {reason}") from None
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
    return path
