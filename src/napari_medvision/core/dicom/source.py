"""The DICOM series a result refers to: its instances, matched to a label map's slices by position.

A DICOM-SEG or RTSTRUCT must reference the exact instances it was drawn on. The label map comes
with ITK geometry (:class:`~..volume.Volume`); this module checks that it lies on the series' grid
and finds, for each label slice ``k``, the instance whose Image Position (Patient) is the world
position of voxel ``(0, 0, k)`` — never relying on file or instance order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ..errors import GeometryMismatchError, MedvisionError, UnreadableFileError
from ..io.dicom import RESULT_MODALITIES, read_dicom_series
from ..volume import Volume, check_same_geometry

#: Cosines closer than this are one orientation.
_ORIENTATION_TOLERANCE = 1e-4
_REQUIRED_UIDS = ("SOPInstanceUID", "SOPClassUID", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID")


class DicomReferenceError(MedvisionError):
    """A series cannot be referenced by a DICOM result (empty UIDs, mixed orientations...)."""


@dataclass
class SourceSeries:
    """A DICOM image series read for referencing.

    Attributes:
        volume: the series as :func:`~..io.dicom.read_dicom_series` reads it (exact ITK geometry).
        datasets: one header (no pixels) per slice, ``datasets[k]`` at volume slice ``k``.
    """

    volume: Volume
    datasets: list[Dataset]

    @property
    def series_uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)

    @property
    def sop_instance_uids(self) -> list[str]:
        return [str(ds.SOPInstanceUID) for ds in self.datasets]

    def check_label(self, label: Volume) -> None:
        """Refuse a label map unless it lies on this series' grid.

        Raises:
            GeometryMismatchError: naming every difference.
        """
        check_same_geometry(self.volume, label, what="label map")


def read_source_series(folder: str | Path, series_uid: str | None = None) -> SourceSeries:
    """Read a series and its headers, each header placed at its slice by position.

    Raises:
        UnreadableFileError: no such series.
        DicomReferenceError: empty UIDs, several orientations, or a slice with no instance.
    """
    headers = _image_headers(Path(folder), series_uid)
    _check_uids(headers, folder)
    volume = read_dicom_series(folder, series_uid=series_uid)
    uid = volume.metadata["series_uid"]
    headers = [ds for ds in headers if str(ds.SeriesInstanceUID) == uid]
    if not headers:
        raise UnreadableFileError(f"no instance of series '{uid}' found in '{folder}'")
    _check_one_orientation(headers)
    return SourceSeries(volume, _match_slices(volume, headers))


def _image_headers(folder: Path, series_uid: str | None) -> list[Dataset]:
    """Headers of the image instances in ``folder`` (of ``series_uid`` when given; results left out)."""
    headers = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else ():
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError, ValueError):
            continue
        if str(ds.get("Modality", "")) in RESULT_MODALITIES or "ImagePositionPatient" not in ds:
            continue
        if series_uid is None or str(ds.get("SeriesInstanceUID", "")) == series_uid:
            headers.append(ds)
    return headers


def _check_uids(headers: list[Dataset], folder) -> None:
    for name in _REQUIRED_UIDS:
        if any(not str(ds.get(name, "") or "").strip() for ds in headers):
            raise DicomReferenceError(
                f"'{folder}' holds instances with an empty {name} (anonymised?): a DICOM result "
                "cannot reference them; use the original series, or an anonymiser that replaces UIDs instead of "
                "emptying them"
            )


def _check_one_orientation(headers: list[Dataset]) -> None:
    cosines = np.array([[float(v) for v in ds.ImageOrientationPatient] for ds in headers])
    if np.abs(cosines - cosines[0]).max() > _ORIENTATION_TOLERANCE:
        raise DicomReferenceError(
            "the series mixes several slice orientations (e.g. a localiser among the axial slices); a result "
            "can only reference a series of parallel slices: remove the odd instances or choose another series"
        )


def _match_slices(volume: Volume, headers: list[Dataset]) -> list[Dataset]:
    """``headers`` reordered so that entry ``k`` lies at the world position of voxel (0, 0, k)."""
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in headers])
    z_spacing = volume.spacing[2] if volume.shape[0] > 1 else 1.0
    tolerance = max(1e-3, 0.1 * z_spacing)
    matched = []
    for k in range(volume.shape[0]):
        expected = volume.index_to_world(np.array([0.0, 0.0, float(k)]))
        distances = np.linalg.norm(positions - expected, axis=1)
        best = int(np.argmin(distances))
        if distances[best] > tolerance:
            raise GeometryMismatchError(
                f"no instance of the series lies at slice {k} (nearest is {distances[best]:.3g} mm away): the "
                "series' slices are not evenly spaced; a result cannot be mapped onto it"
            )
        matched.append(headers[best])
    return matched
