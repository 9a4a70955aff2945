"""Atomic writes of DICOM datasets: the file appears complete or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .._atomic import public_file_mode
from ..errors import WriteError


def write_dataset_atomic(dataset, path: str | Path) -> Path:
    """Save a pydicom / highdicom dataset to ``path`` through a temp file in its folder and a rename.

    Raises:
        WriteError: the folder is missing or read-only, or ``path`` is a folder; nothing was changed.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise WriteError(f"cannot write '{path}': it is a folder; give a file name such as result.dcm")
    try:
        handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        os.close(handle)
    except OSError as exc:
        raise WriteError(f"cannot write '{path.name}' in folder '{folder}': {exc.strerror}") from None
    try:
        dataset.save_as(temp_name, enforce_file_format=True)
        os.chmod(temp_name, public_file_mode())
        os.replace(temp_name, path)
    except OSError as exc:
        raise WriteError(f"cannot write '{path.name}': {exc.strerror}") from None
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
    return path
