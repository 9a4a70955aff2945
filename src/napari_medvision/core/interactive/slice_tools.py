"""Slice tools on one label of a label map: fill the slices between drawn ones, fill holes, keep the
clicked piece, smooth. Each takes the whole map ``(z, y, x)`` and returns a new one in which only
that label's voxels (and background) changed: the other labels are kept as they were.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import MedvisionError


def interpolate_slices(labels: np.ndarray, label: int, axis: int = 0) -> np.ndarray:
    """Fill the slices between the slices where ``label`` is drawn, along array ``axis`` (0: z).

    Shape-based interpolation: between two drawn slices, the signed distance maps of their contours
    (SimpleITK's ``SignedMaurerDistanceMap``, in pixels) are blended linearly and cut at zero. (ITK's
    ``MorphologicalContourInterpolator`` is a remote module the SimpleITK wheels do not ship.)
    Slices already drawn are kept as they are.

    Raises:
        MedvisionError: the label is drawn on fewer than two slices along that axis.
    """
    mask = np.moveaxis(labels == label, axis, 0)
    drawn = np.flatnonzero(mask.any(axis=(1, 2)))
    if len(drawn) < 2:
        raise MedvisionError(f"draw label {label} on at least two slices (found {len(drawn)}) and "
                             "the slices between them are filled")
    result = mask.copy()
    for lower, upper in zip(drawn[:-1], drawn[1:]):
        if upper - lower < 2:
            continue
        low, high = _signed_distance(mask[lower]), _signed_distance(mask[upper])
        for k in range(lower + 1, upper):
            t = (k - lower) / (upper - lower)
            result[k] = (1 - t) * low + t * high <= 0
    return _replace(labels, label, np.moveaxis(result, 0, axis))


def _signed_distance(plane: np.ndarray) -> np.ndarray:
    """Signed distance (pixels) to the contour of a 2D mask: negative inside."""
    image = sitk.GetImageFromArray(plane.astype(np.uint8))
    distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False, useImageSpacing=False)
    return sitk.GetArrayFromImage(distance)


def fill_holes(labels: np.ndarray, label: int) -> np.ndarray:
    """Holes of ``label`` filled, in 3D and in each axial slice (a hole open to the next slice too)."""
    mask = ndimage.binary_fill_holes(labels == label)
    mask = np.stack([ndimage.binary_fill_holes(plane) for plane in mask])
    return _replace(labels, label, mask)


def keep_component(labels: np.ndarray, label: int, index_zyx) -> np.ndarray:
    """Only the connected piece of ``label`` that holds voxel ``index_zyx`` (the others become background).

    Raises:
        MedvisionError: the voxel is not of that label.
    """
    index = tuple(int(i) for i in index_zyx)
    if labels[index] != label:
        raise MedvisionError(f"click inside label {label} to choose the piece to keep (that voxel is "
                             f"{int(labels[index])})")
    pieces, _ = ndimage.label(labels == label)
    return _replace(labels, label, pieces == pieces[index])


def smooth(labels: np.ndarray, label: int, spacing_xyz, radius_mm: float = 2.0) -> np.ndarray:
    """``label`` smoothed: a Gaussian of ``radius_mm`` (mm, per axis by spacing) over its mask, at 0.5."""
    sigma = [radius_mm / s for s in np.asarray(spacing_xyz, float)[::-1]]
    mask = ndimage.gaussian_filter((labels == label).astype(np.float32), sigma) >= 0.5
    return _replace(labels, label, mask)


def _replace(labels: np.ndarray, label: int, mask: np.ndarray) -> np.ndarray:
    """``labels`` with ``label`` set to ``mask`` where it was that label or background."""
    result = labels.copy()
    free = (labels == label) | (labels == 0)
    result[free & ~mask & (labels == label)] = 0
    result[free & mask] = label
    return result
