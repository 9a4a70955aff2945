"""Radiology display windows (width / level) and their napari contrast limits."""

from __future__ import annotations

import numpy as np

#: CT window presets as ``(width, level)`` in HU.
CT_PRESETS: dict[str, tuple[float, float]] = {
    "Brain": (80.0, 40.0),
    "Lung": (1500.0, -600.0),
    "Mediastinum / soft tissue": (350.0, 50.0),
    "Bone": (1800.0, 400.0),
    "Liver": (150.0, 30.0),
}
AUTO = "Auto (1–99%)"
#: The window the file itself names (DICOM Window Center / Width or VOI LUT), when it names one.
FILE_WINDOW = "From the file (VOI)"


def window_to_limits(width: float, level: float) -> tuple[float, float]:
    """Contrast limits ``(low, high)`` of a window."""
    return level - width / 2.0, level + width / 2.0


def limits_to_window(low: float, high: float) -> tuple[float, float]:
    """``(width, level)`` of contrast limits."""
    return high - low, (high + low) / 2.0


def auto_limits(array: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.0,
                max_samples: int = 1_000_000) -> tuple[float, float]:
    """Percentile limits of the non-background voxels (the MR default).

    Large arrays are subsampled with a fixed stride, so the cost is bounded.
    """
    flat = np.asarray(array).ravel()
    if flat.size > max_samples:
        flat = flat[:: flat.size // max_samples]
    foreground = flat[flat > flat.min()] if flat.min() != flat.max() else flat
    low, high = np.percentile(foreground if foreground.size else flat, [low_pct, high_pct])
    if high <= low:
        high = low + 1.0
    return float(low), float(high)


def looks_like_ct(array: np.ndarray, modality: str | None) -> bool:
    """CT by its DICOM modality, or (no modality) by air near -1000 HU."""
    if modality:
        return modality.upper() == "CT"
    flat = np.asarray(array).ravel()
    sample = flat[:: max(1, flat.size // 200_000)]
    return bool(np.issubdtype(sample.dtype, np.signedinteger) or np.issubdtype(sample.dtype, np.floating)) and \
        float(np.percentile(sample, 1)) < -700


def default_limits(array: np.ndarray, modality: str | None,
                   file_window: tuple[float, float] | None = None) -> tuple[float, float]:
    """The file's own window (``(width, level)``) when it has one, soft tissue for CT, else percentiles."""
    if file_window is not None:
        return window_to_limits(*file_window)
    if looks_like_ct(array, modality):
        return window_to_limits(*CT_PRESETS["Mediastinum / soft tissue"])
    return auto_limits(array)
