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
