"""Read a medical image file or DICOM folder into a :class:`~..volume.Volume`.

Everything goes through SimpleITK so that geometry is exactly what ITK reports.
Failures raise :class:`~..errors.MedvisionError` subclasses with one-line messages.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import FourDimensionalError, UnreadableFileError, UnsupportedFormatError
from ..volume import Volume, check_same_geometry
from ._itk import itk_reason, quiet_itk
from .metaimage_check import check_metaimage_complete
from .nifti_check import check_nifti_complete
from .dicom import dicom_tags, is_dicom_file, read_dicom_series
from .picture import PIL_EXTENSIONS, grey_and_channels, read_picture_samples
from .radiograph import is_projection, read_radiograph

log = logging.getLogger(__name__)

VOLUME_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
PICTURE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_EXTENSIONS = (".dcm", ".dicom", ".ima")
#: Every file ending :func:`read_volume` accepts (DICOM files without an ending are
#: recognised by their ``DICM`` preamble).
READ_EXTENSIONS = VOLUME_EXTENSIONS + PICTURE_EXTENSIONS + DICOM_EXTENSIONS


def file_kind(path: Path) -> str | None:
    """``"volume"``, ``"picture"``, ``"dicom"`` or None, judged cheaply from the name / preamble."""
    name = path.name.lower()
    if name.endswith(VOLUME_EXTENSIONS):
        return "volume"
    if name.endswith(PICTURE_EXTENSIONS):
        return "picture"
    if name.endswith(DICOM_EXTENSIONS) or is_dicom_file(path):
        return "dicom"
    return None


def read_volume(path: str | Path, *, series_uid: str | None = None, frame: int | None = None) -> Volume:
    """Read a file or a DICOM series folder.

    Args:
        path: a NIfTI / NRRD / MetaImage / PNG / JPEG / TIFF / DICOM file, or a
            folder holding DICOM series.
        series_uid: for a folder, which series to read (default: the largest).
        frame: for a 4D file, which volume to read. A 4D file without ``frame``
            is refused with a message saying how many volumes it holds.

    Returns:
        The volume; ``metadata`` holds ``path`` and ``modality`` (from DICOM tags,
        else None), and ``warnings`` lists what was odd but readable.

    Raises:
        UnreadableFileError: missing, empty, corrupt, or 4D without ``frame``.
        UnsupportedFormatError: a file type we do not read.
    """
    path = Path(path)
    if not path.exists():
        raise UnreadableFileError(f"'{path}' does not exist")
    if path.is_dir():
        return read_dicom_series(path, series_uid=series_uid)
    if path.stat().st_size == 0:
        raise UnreadableFileError(f"'{path.name}' is empty (0 bytes)")
    kind = file_kind(path)
    if kind is None:
        raise UnsupportedFormatError(
            f"'{path.name}' is not a supported image type; use one of "
            + ", ".join(READ_EXTENSIONS) + ", or a DICOM folder"
        )
    with quiet_itk():
        volume = _read_file(path, kind, frame)
    _replace_non_finite(volume)
    for warning in volume.warnings:
        log.warning("%s: %s", path.name, warning)
    return volume


def _read_file(path: Path, kind: str, frame: int | None) -> Volume:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise UnreadableFileError(
            f"'{path.name}' cannot be read as an image (corrupt, truncated or not this format): {itk_reason(exc)}"
        ) from None
    warnings = []
    dimension = reader.GetDimension()
    if dimension == 4:
        frames = reader.GetSize()[3]
        if frame is None:
            raise FourDimensionalError(
                f"'{path.name}' is 4D ({frames} volumes of {'x'.join(map(str, reader.GetSize()[:3]))}); "
                f"choose one volume (frame 0..{frames - 1}, CLI option --frame)",
                frames,
            )
        if not 0 <= frame < frames:
            raise UnreadableFileError(f"'{path.name}' has volumes 0..{frames - 1}; frame {frame} does not exist")
        reader.SetExtractIndex([0, 0, 0, frame])
        reader.SetExtractSize([*reader.GetSize()[:3], 0])
        warnings.append(f"4D file: showing volume {frame} of {frames}")
    elif dimension > 4:
        raise UnreadableFileError(f"'{path.name}' is {dimension}D; only 2D, 3D and 4D images are supported")
    if path.name.lower().endswith((".nii", ".nii.gz")):
        check_nifti_complete(path)
    elif path.name.lower().endswith(".mha"):
        check_metaimage_complete(path)
    if path.name.lower().endswith(PIL_EXTENSIONS) and dimension == 2:
        return _read_pil_picture(path, reader)
    if kind == "dicom" and is_projection(dicom_tags(reader)["modality"]):
        return read_radiograph(path)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise UnreadableFileError(
            f"'{path.name}' is damaged or truncated: {itk_reason(exc)}"
        ) from None
    if image.GetNumberOfComponentsPerPixel() > 1:
        image = _to_grayscale(image)
        warnings.append("colour image converted to grayscale")
    tags = dicom_tags(reader) if kind == "dicom" else {}
    volume = Volume.from_sitk(image, path=str(path), **tags)
    volume.metadata.setdefault("modality", None)
    volume.warnings.extend(warnings)
    return volume


def _read_pil_picture(path: Path, reader: sitk.ImageFileReader) -> Volume:
    """A PNG / JPEG / BMP: samples as MONAI's PILReader reads them, geometry as ITK reports it."""
    samples, header = read_picture_samples(path)
    if samples.shape[:2] != tuple(reversed(reader.GetSize())):
        raise UnreadableFileError(f"'{path.name}': its decoders disagree on its size "
                                  f"({samples.shape[:2]} vs {tuple(reversed(reader.GetSize()))})")
    if samples.dtype == bool:
        samples = samples.astype(np.uint8)
    grey, channels = grey_and_channels(samples)
    direction = np.eye(3)
    direction[:2, :2] = np.reshape(reader.GetDirection(), (2, 2))
    return Volume(grey[np.newaxis], (*reader.GetSpacing(), 1.0), (*reader.GetOrigin(), 0.0), direction,
                  {"path": str(path), "modality": None, "dimension": 2, "picture": header},
                  channels=None if channels is None else channels[np.newaxis])


def _to_grayscale(image: sitk.Image) -> sitk.Image:
    """Luminance of an RGB(A) picture (X-rays are often saved as RGB PNGs)."""
    channels = [sitk.VectorIndexSelectionCast(image, i, sitk.sitkFloat32) for i in range(3)]
    gray = 0.299 * channels[0] + 0.587 * channels[1] + 0.114 * channels[2]
    gray.CopyInformation(channels[0])
    return gray


def _replace_non_finite(volume: Volume) -> None:
    """Replace NaN / inf by the lowest finite value, with a warning; refuse an all-NaN image."""
    array = volume.array
    if not np.issubdtype(array.dtype, np.floating):
        return
    finite = np.isfinite(array)
    if finite.all():
        return
    if not finite.any():
        raise UnreadableFileError("the image holds no finite values (all NaN or infinite)")
    bad = int(array.size - np.count_nonzero(finite))
    fill = float(array[finite].min())
    volume.array = np.where(finite, array, np.asarray(fill, dtype=array.dtype))
    volume.warnings.append(f"{bad} NaN/infinite voxels replaced by the image minimum ({fill:g})")


def read_label_for(image: Volume, path: str | Path) -> Volume:
    """Read a label map and refuse it unless it lies on ``image``'s exact grid.

    Raises:
        GeometryMismatchError: naming how the two geometries differ.
    """
    label = read_volume(path)
    check_same_geometry(image, label)
    if np.issubdtype(label.array.dtype, np.floating):
        if not np.array_equal(label.array, np.round(label.array)):
            raise UnreadableFileError(f"'{Path(path).name}' holds fractional values; a label map needs integers")
        label.array = label.array.astype(np.int32)
    return label


def volume_info(volume: Volume) -> dict:
    """The ``medvision info --json`` record of a volume (see DESIGN.md).

    A 2D source (a PNG, a single X-ray) is reported in 2D, as SimpleITK reports it.
    """
    info = {"shape": [int(s) for s in volume.shape], **volume.geometry}
    if volume.metadata.get("dimension") == 2:
        info = {
            "shape": info["shape"][1:],
            "size": info["size"][:2],
            "spacing": info["spacing"][:2],
            "origin": info["origin"][:2],
            "direction": [float(v) for v in volume.direction[:2, :2].ravel()],
        }
    return {**info, "dtype": str(volume.array.dtype), "modality": volume.modality}
