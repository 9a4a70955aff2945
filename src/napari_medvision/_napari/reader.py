"""The reader contribution: drag-and-drop a study file or a DICOM folder.

It claims medical formats only: NIfTI, NRRD, MetaImage and DICOM (by ending, or by the
``DICM`` preamble for files without one), and folders holding DICOM files. Ordinary
pictures (PNG, JPEG, TIFF) are left to napari and other plugins; an X-ray saved as one is
opened with the Study dock's "Open as study…" or ``medvision``. ``napari_get_reader`` only
checks names and 132 bytes, and returns None for what it does not claim; read failures
become a notification, never a traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..core.errors import FourDimensionalError, MedvisionError
from ..core.io import read_volume
from ..core.io.dicom import is_dicom_file
from ..core.io.reader import DICOM_EXTENSIONS, VOLUME_EXTENSIONS
from .dicom_results import folder_results, is_dicom_result, seg_layer_data
from .layers import image_layer_data, labels_layer_data, looks_like_label_map

log = logging.getLogger(__name__)
_MAX_FILES_PROBED = 50


def napari_get_reader(path):
    """Return :func:`read_study` when ``path`` looks like a study we read, else None."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(_readable(Path(p)) for p in paths):
        return None
    return read_study


def _readable(path: Path) -> bool:
    """A medical file by its ending, a DICOM file by its content, or a folder with DICOM files."""
    try:
        if path.is_dir():
            return any(is_dicom_file(child) for _, child in zip(range(_MAX_FILES_PROBED), path.iterdir())
                       if child.is_file())
        if not path.is_file():
            return False
        return path.name.lower().endswith(VOLUME_EXTENSIONS + DICOM_EXTENSIONS) or is_dicom_file(path)
    except OSError:
        return False


def read_study(path) -> list[tuple]:
    """Layer data for each path; an unreadable one is reported and skipped."""
    from napari.utils.notifications import show_error, show_warning

    layers = []
    for item in [path] if isinstance(path, (str, Path)) else path:
        try:
            if is_dicom_result(Path(item)):  # a DICOM-SEG / RTSTRUCT: labels on its source series
                layers.append(seg_layer_data(Path(item)))
                continue
            volume = _read_with_first_frame(Path(item))
        except MedvisionError as exc:
            show_error(f"napari-medvision: {exc}")
            continue
        for warning in volume.warnings:
            show_warning(f"{Path(item).name}: {warning}")
        layers.append(volume_layer_data(volume, _display_name(Path(item))))
        layers += _results_in_folder(Path(item))
    return layers or [(None,)]


def _results_in_folder(folder: Path) -> list[tuple]:
    """Labels layers for the DICOM-SEG / RTSTRUCT files beside a series; one that does not fit is reported."""
    from napari.utils.notifications import show_error

    layers = []
    for path in folder_results(folder):
        try:
            layers.append(seg_layer_data(path, folder))
        except MedvisionError as exc:
            show_error(f"napari-medvision: {path.name}: {exc}")
    return layers


def _read_with_first_frame(path: Path):
    try:
        return read_volume(path)
    except FourDimensionalError:
        return read_volume(path, frame=0)


def volume_layer_data(volume, name: str) -> tuple:
    """Labels for a label map, otherwise an image layer."""
    if looks_like_label_map(volume, name):
        return labels_layer_data(volume, name)
    return image_layer_data(volume, name)


def _display_name(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".jpg", ".jpeg",
                ".tiff", ".tif", ".dcm"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name
