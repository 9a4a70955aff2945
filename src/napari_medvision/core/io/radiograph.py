"""Projection radiographs in DICOM (CR, DX, MG, RF, XA, IO...): pixels, spacing, display.

GDCM (SimpleITK's DICOM reader) gets these wrong in three ways we measured: it prefers
Imager Pixel Spacing over Pixel Spacing, ignores Pixel Spacing for a multi-frame file
(1 mm), and flips MONOCHROME1 pixel values. So a single-file radiograph is read here
with pydicom, as the standard defines it:

* values: stored pixels through the Modality LUT (Rescale Slope / Intercept), never
  inverted, as MONAI's PydicomReader gives them;
* spacing: Pixel Spacing (calibrated to the patient) when present, else Imager Pixel
  Spacing (at the detector: objects appear magnified by the beam's divergence, so a
  warning says so), else 1 mm with a warning;
* display: MONOCHROME1 (low values white) is shown with an inverted grey map, so bone is
  white; the file's first Window Center / Width, or the range of its VOI LUT, is the
  default window (``metadata["window"]`` as ``[width, level]``);
* a multi-frame file is a volume of frames (z); ``Spacing Between Slices`` or 1 mm apart.

A file pydicom cannot decode (a compressed transfer syntax without its plugin) is left to
GDCM, with its spacing corrected from the header.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import UnreadableFileError
from ..volume import Volume

log = logging.getLogger(__name__)

#: DICOM modalities that are projections (one image of the whole body part, no slice position).
PROJECTION_MODALITIES = frozenset({"CR", "DX", "MG", "RF", "XA", "IO", "PX", "RG", "DF", "DR"})


def is_projection(modality: str | None) -> bool:
    return (modality or "").upper() in PROJECTION_MODALITIES


def read_radiograph(path: Path) -> Volume:
    """One DICOM radiograph file (single or multi-frame) as a Volume; see the module docstring.

    Returns:
        ``array`` (frames, rows, columns) float32 or the stored integer type after the
        Modality LUT; ``metadata`` with ``modality``, ``photometric``, ``invert_display``,
        ``window`` ([width, level] or None), ``spacing_source`` and ``presentation_intent``.

    Raises:
        UnreadableFileError: not a readable DICOM image.
    """
    import pydicom
    from pydicom.pixels import apply_modality_lut

    try:
        dataset = pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises InvalidDicomError, OSError, ValueError...
        raise UnreadableFileError(f"'{path.name}' cannot be read as DICOM: {exc}") from None
    warnings: list[str] = []
    try:
        pixels = apply_modality_lut(dataset.pixel_array, dataset)
    except Exception as exc:  # no decoder for a compressed syntax: GDCM decodes it
        log.info("pydicom cannot decode %s (%s); reading its pixels with GDCM", path, exc)
        pixels, gdcm_note = _gdcm_pixels(path, dataset)
        warnings.append(gdcm_note)
    if pixels.ndim == 2:
        pixels = pixels[np.newaxis]
    if pixels.ndim != 3:
        raise UnreadableFileError(f"'{path.name}' holds colour or {pixels.ndim}D pixels, not a grey radiograph")
    (row_mm, column_mm), source = _pixel_spacing(dataset, warnings)
    frame_mm = float(getattr(dataset, "SpacingBetweenSlices", 0) or 1.0)
    photometric = str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2"))
    metadata = {
        "path": str(path), "modality": str(getattr(dataset, "Modality", "")) or None,
        "series_description": str(getattr(dataset, "SeriesDescription", "")) or None,
        "series_uid": str(getattr(dataset, "SeriesInstanceUID", "")) or None,
        "photometric": photometric, "invert_display": photometric == "MONOCHROME1" and not warnings_gdcm(warnings),
        "window": file_window(dataset), "spacing_source": source,
        "presentation_intent": str(getattr(dataset, "PresentationIntentType", "")) or None,
    }
    if pixels.shape[0] == 1:
        metadata["dimension"] = 2
    if metadata["presentation_intent"] == "FOR PROCESSING":
        warnings.append("a 'for processing' image (raw detector values): models trained on 'for presentation' "
                        "images may not apply to it")
    array = pixels if np.issubdtype(pixels.dtype, np.integer) else pixels.astype(np.float32)
    return Volume(array, (column_mm, row_mm, frame_mm), (0.0, 0.0, 0.0), np.eye(3), metadata, warnings)


def warnings_gdcm(warnings: list[str]) -> bool:
    """True when the pixels came from GDCM (which has already turned MONOCHROME1 into MONOCHROME2)."""
    return any(w.startswith("pixels decoded by GDCM") for w in warnings)


def _pixel_spacing(dataset, warnings: list[str]) -> tuple[tuple[float, float], str]:
    """(row, column) spacing in mm and which attribute gave it."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = getattr(dataset, keyword, None)
        if value is not None and len(value) == 2 and all(float(v) > 0 for v in value):
            if keyword == "ImagerPixelSpacing":
                warnings.append("no Pixel Spacing: distances use Imager Pixel Spacing (measured at the detector, "
                                "so they include the X-ray magnification, typically 5-20 %)")
            return (float(value[0]), float(value[1])), keyword
    warnings.append("no pixel spacing in the file: distances are in pixels (1 mm each)")
    return (1.0, 1.0), "none"


def file_window(dataset) -> list[float] | None:
    """``[width, level]`` of the file's first VOI window, or the range of its first VOI LUT, or None."""
    center, width = getattr(dataset, "WindowCenter", None), getattr(dataset, "WindowWidth", None)
    if center is not None and width is not None:
        first = [float(v[0] if _is_multi(v) else v) for v in (width, center)]
        if first[0] > 0:
            return first
    for item in getattr(dataset, "VOILUTSequence", None) or []:
        descriptor = getattr(item, "LUTDescriptor", None)
        if descriptor is not None and len(descriptor) == 3:
            entries = int(descriptor[0]) or 65536
            first_input = float(descriptor[1])
            return [float(entries), first_input + (entries - 1) / 2.0]
    return None


def _is_multi(value) -> bool:
    return hasattr(value, "__len__") and not isinstance(value, (str, bytes))


def _gdcm_pixels(path: Path, dataset) -> tuple[np.ndarray, str]:
    import SimpleITK as sitk

    from ._itk import itk_reason, quiet_itk

    try:
        with quiet_itk():
            image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise UnreadableFileError(f"'{path.name}': its pixels cannot be decoded: {itk_reason(exc)}") from None
    return sitk.GetArrayFromImage(image), "pixels decoded by GDCM (pydicom lacks a decoder for this file's compression)"
