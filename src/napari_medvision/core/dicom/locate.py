"""Find the folder holding a DICOM series near a result file (a SEG or RTSTRUCT beside its images)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import SimpleITK as sitk

from ..errors import UnreadableFileError
from ..io._itk import quiet_itk


def find_series_folder(series_uid: str, near: Path) -> Path:
    """The folder holding ``series_uid``: the result's own folder, its parent, or a folder beside it.

    Raises:
        UnreadableFileError: the series is in none of them.
    """
    here = near.parent if near.is_file() else near
    candidates = [here, here.parent, *sorted(p for p in here.parent.iterdir() if p.is_dir() and p != here)]
    for folder in candidates:
        with quiet_itk():
            if series_uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
                return folder
    raise UnreadableFileError(
        f"the source series {series_uid} of '{near.name}' is not in its folder or beside it: put the SEG or "
        "RTSTRUCT in its series' folder (or open that folder)"
    )


def result_files(folder: Path, modality: str) -> list[Path]:
    """The files directly in ``folder`` whose Modality is ``modality`` (``"SEG"``, ``"RTSTRUCT"``)."""
    found = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        if dicom_modality(path) == modality:
            found.append(path)
    return found


def dicom_modality(path: Path) -> str | None:
    """The Modality of a DICOM file, read from its header only (None when not DICOM)."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, TypeError):
        return None
    return str(ds.get("Modality", "")) or None


def referenced_series_uid(path: Path) -> str:
    """The image series a SEG or RTSTRUCT file refers to.

    Raises:
        UnreadableFileError: the file names no referenced series.
    """
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    try:
        if ds.get("Modality") == "RTSTRUCT":
            study = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
            return str(study.RTReferencedSeriesSequence[0].SeriesInstanceUID)
        return str(ds.ReferencedSeriesSequence[0].SeriesInstanceUID)
    except (AttributeError, IndexError):
        raise UnreadableFileError(f"'{path.name}' names no referenced image series") from None
