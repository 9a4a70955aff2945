"""DICOM series: find the series in a folder, sort slices by position, read one.

SimpleITK/GDCM apply Rescale Slope / Intercept while reading, so CT values come
out in Hounsfield units. Slices are ordered by their position along the slice
normal (Image Position Patient), never by file name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import UnreadableFileError
from ..volume import Volume
from ._itk import itk_reason, quiet_itk
from .radiograph import is_projection, read_radiograph

log = logging.getLogger(__name__)

_TAGS = {"modality": "0008|0060", "series_description": "0008|103e", "series_uid": "0020|000e"}
_POSITION, _ORIENTATION = "0020|0032", "0020|0037"
#: Relative difference between slice gaps above which we warn about a missing slice.
_GAP_TOLERANCE = 0.01
#: DICOM objects that are results, not images (read by core/dicom/): never listed as an image series.
RESULT_MODALITIES = ("SEG", "RTSTRUCT", "SR", "PR", "RTPLAN", "RTDOSE", "KO")


@dataclass(frozen=True)
class DicomSeries:
    """One series found in a folder (``files`` ordered by slice position)."""

    uid: str
    files: tuple[str, ...]
    description: str
    modality: str | None

    @property
    def n_slices(self) -> int:
        return len(self.files)

    def label(self) -> str:
        """Text for a series chooser: description, modality, slice count."""
        return f"{self.description or '(no description)'} — {self.modality or '?'} — {self.n_slices} slices"


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` carries the DICOM preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def dicom_tags(reader: sitk.ImageFileReader) -> dict:
    """Modality and series description from a reader that has read the header."""
    tags = {}
    for name, key in _TAGS.items():
        tags[name] = reader.GetMetaData(key).strip() or None if reader.HasMetaDataKey(key) else None
    return tags


def _header(path: str) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    return reader


def list_dicom_series(folder: str | Path) -> list[DicomSeries]:
    """Every DICOM series directly inside ``folder``, largest first.

    Raises:
        UnreadableFileError: the folder holds no DICOM series.
    """
    folder = Path(folder)
    found = []
    with quiet_itk():  # GDCM says "No Series were found" on stderr; the error below says it once
        for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
            files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
            if not files:
                continue
            try:
                tags = dicom_tags(_header(files[0]))
            except RuntimeError:
                continue
            if tags["modality"] in RESULT_MODALITIES:
                continue
            found.append(DicomSeries(uid, tuple(files), tags["series_description"] or "", tags["modality"]))
    if not found:
        raise UnreadableFileError(f"no DICOM series found in folder '{folder}'")
    return sorted(found, key=lambda s: -s.n_slices)


def _sorted_by_position(files: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Files sorted along the slice normal, and warnings about uneven gaps."""
    positions, normal = [], None
    for name in files:
        reader = _header(name)
        if not reader.HasMetaDataKey(_POSITION):
            return list(files), []
        positions.append([float(v) for v in reader.GetMetaData(_POSITION).split("\\")])
        if normal is None and reader.HasMetaDataKey(_ORIENTATION):
            cosines = [float(v) for v in reader.GetMetaData(_ORIENTATION).split("\\")]
            normal = np.cross(cosines[:3], cosines[3:])
    if normal is None:
        normal = np.array([0.0, 0.0, 1.0])
    distance = np.asarray(positions) @ normal
    order = np.argsort(distance, kind="stable")
    warnings = []
    if len(files) > 2:
        gaps = np.diff(distance[order])
        if gaps.min() <= 1e-6:
            warnings.append("two slices share one position; the series may hold duplicates")
        elif gaps.max() - gaps.min() > _GAP_TOLERANCE * gaps.min() + 1e-3:
            warnings.append(
                f"uneven slice spacing ({gaps.min():.3g} to {gaps.max():.3g} mm): a slice may be missing, "
                "so distances along the slice axis are not reliable"
            )
    return [files[i] for i in order], warnings


def read_dicom_series(folder: str | Path, series_uid: str | None = None) -> Volume:
    """Read one series of a DICOM folder (default: the one with most slices).

    Raises:
        UnreadableFileError: no series, an unknown ``series_uid``, or unreadable pixels.
    """
    folder = Path(folder)
    series = list_dicom_series(folder)
    warnings = []
    if series_uid is None:
        chosen = series[0]
        if len(series) > 1:
            warnings.append(
                f"folder holds {len(series)} series; reading the largest, "
                f"'{chosen.description}' ({chosen.n_slices} slices); choose another by its UID"
            )
    else:
        matches = [s for s in series if s.uid == series_uid]
        if not matches:
            raise UnreadableFileError(
                f"series '{series_uid}' is not in '{folder}'; it holds: " + ", ".join(s.uid for s in series)
            )
        chosen = matches[0]
    if chosen.n_slices == 1 and is_projection(chosen.modality):
        volume = read_radiograph(Path(chosen.files[0]))
        volume.metadata["path"] = str(folder)
        volume.warnings[:0] = warnings
        for warning in volume.warnings:
            log.warning("%s: %s", folder.name, warning)
        return volume
    try:
        with quiet_itk():
            files, gap_warnings = _sorted_by_position(chosen.files)
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(files)
            image = reader.Execute()
    except RuntimeError as exc:
        raise UnreadableFileError(f"DICOM series in '{folder.name}' cannot be read: {itk_reason(exc)}") from None
    volume = Volume.from_sitk(
        image,
        path=str(folder),
        modality=chosen.modality,
        series_description=chosen.description,
        series_uid=chosen.uid,
    )
    volume.warnings.extend(warnings + gap_warnings)
    for warning in volume.warnings:
        log.warning("%s: %s", folder.name, warning)
    return volume
