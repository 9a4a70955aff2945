"""Slice tools: each changes one label only."""

import numpy as np
import pytest

from napari_medvision.core.errors import MedvisionError
from napari_medvision.core.interactive import slice_tools


def disc_stack(drawn=(2, 8)):
    labels = np.zeros((11, 20, 20), np.uint8)
    yy, xx = np.ogrid[:20, :20]
    for z in drawn:
        labels[z][(yy - 10) ** 2 + (xx - 10) ** 2 <= 25] = 1
    labels[:, 0:2, 0:2] = 2                     # another label, which no tool may touch
    return labels


def test_interpolation_fills_the_slices_between():
    labels = disc_stack()
    result = slice_tools.interpolate_slices(labels, 1)
    assert all(result[z].astype(bool).sum() > 50 for z in range(3, 8))
    assert not (result[0] == 1).any() and not (result[10] == 1).any() and (result == 2).sum() == (labels == 2).sum()
    with pytest.raises(MedvisionError, match="at least two slices"):
        slice_tools.interpolate_slices(disc_stack(drawn=(4,)), 1)


def test_fill_holes_keep_component_smooth():
    labels = disc_stack(drawn=(5,))
    labels[5, 10, 10] = 0
    labels[5, 15:18, 1:4] = 0
    labels[5, 16, 2] = 1                        # a speck apart from the disc
    filled = slice_tools.fill_holes(labels, 1)
    assert filled[5, 10, 10] == 1
    kept = slice_tools.keep_component(filled, 1, (5, 10, 10))
    assert kept[5, 16, 2] == 0 and kept[5, 10, 10] == 1 and (kept == 2).sum() == (labels == 2).sum()
    with pytest.raises(MedvisionError, match="click inside label 1"):
        slice_tools.keep_component(filled, 1, (0, 10, 10))
    ball = disc_stack(drawn=range(2, 9))
    ball[5, 3, 10] = 1                          # a spike off the disc's edge
    smoothed = slice_tools.smooth(ball, 1, (1, 1, 1), radius_mm=1.0)
    assert smoothed[5, 10, 10] == 1 and smoothed[5, 3, 10] == 0 and (smoothed == 2).sum() == (ball == 2).sum()


def _whole_map(labels, label, tool, *args):
    """The slice tools as they were, on the whole map (the reference for their bounding-box versions)."""
    import SimpleITK as sitk
    from scipy import ndimage

    def replace(mask):
        result = labels.copy()
        free = (labels == label) | (labels == 0)
        result[free & ~mask & (labels == label)] = 0
        result[free & mask] = label
        return result

    if tool == "fill":
        mask = ndimage.binary_fill_holes(labels == label)
        return replace(np.stack([ndimage.binary_fill_holes(plane) for plane in mask]))
    if tool == "keep":
        pieces, _ = ndimage.label(labels == label)
        return replace(pieces == pieces[args[0]])
    if tool == "smooth":
        sigma = [2.0 / s for s in np.asarray(args[0], float)[::-1]]
        return replace(ndimage.gaussian_filter((labels == label).astype(np.float32), sigma) >= 0.5)
    mask = labels == label
    drawn = np.flatnonzero(mask.any(axis=(1, 2)))
    result = mask.copy()

    def distance(plane):
        image = sitk.GetImageFromArray(plane.astype(np.uint8))
        return sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(image, insideIsPositive=False,
                                                                   squaredDistance=False, useImageSpacing=False))
    for lower, upper in zip(drawn[:-1], drawn[1:]):
        low, high = distance(mask[lower]), distance(mask[upper])
        for k in range(lower + 1, upper):
            t = (k - lower) / (upper - lower)
            result[k] = (1 - t) * low + t * high <= 0
    return replace(result)


@pytest.mark.parametrize("seed", range(6))
def test_tools_on_the_labels_box_equal_the_whole_map(seed):
    """Each tool works on the label's bounding box only: the same map as on the whole map, with the
    label touching the map's edges, other labels around it, holes, several pieces, anisotropic voxels."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    shape = (12, 30, 34)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    labels = np.zeros(shape, np.uint8)
    labels[field > np.quantile(field, 0.8)] = 1
    labels[(field < np.quantile(field, 0.1)) & (rng.random(shape) < 0.9)] = 2
    labels[(labels == 1) & (rng.random(shape) < 0.05)] = 0                       # holes
    if seed % 2:
        labels[:, :, :seed + 3] = np.where(labels[:, :, :seed + 3] == 2, 2, 1)  # at the map's edge
    spacing = (1.4 + 0.2 * seed, 1.8, 2.5 + seed)               # a 2 mm Gaussian of 0.4-1.4 voxels
    inside = tuple(int(i) for i in np.argwhere(labels == 1)[rng.integers((labels == 1).sum())])
    assert np.array_equal(slice_tools.fill_holes(labels, 1), _whole_map(labels, 1, "fill"))
    assert np.array_equal(slice_tools.keep_component(labels, 1, inside), _whole_map(labels, 1, "keep", inside))
    assert np.array_equal(slice_tools.smooth(labels, 1, spacing), _whole_map(labels, 1, "smooth", spacing))
    sparse = labels.copy()
    sparse[1::3] = np.where(sparse[1::3] == 1, 0, sparse[1::3])                  # drawn on some slices only
    sparse[2::3] = np.where(sparse[2::3] == 1, 0, sparse[2::3])
    assert np.array_equal(slice_tools.interpolate_slices(sparse, 1), _whole_map(sparse, 1, "interpolate"))


def test_keep_component_outside_the_map_is_a_clear_error():
    labels = np.ones((4, 5, 6), np.uint8)
    with pytest.raises(MedvisionError, match="outside the labels"):
        slice_tools.keep_component(labels, 1, (4, 0, 0))
