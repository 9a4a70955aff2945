"""The bundle's preprocessing with its resampling computed in float32 instead of float64.

MONAI's ``Spacingd`` (and ``SpatialResampled``, ``ResampleToMatchd``, ``Spacing``) resample in
float64 unless told otherwise: the image is converted to float64 (2x its float32 size) and the
sampling grid is float64 too, although the output is float32 either way. For a 512x512x300 CT that
is most of a segmentation's peak memory (benchmarks/README.md, goal 4). :func:`float32_resampling`
sets those transforms' computation type to float32 for the duration of one preprocessing run and
puts the bundle's own setting back afterwards: the transforms are MONAI's, run as MONAI runs them,
only the ``dtype`` argument MONAI documents for this differs. Inverting them later (``Invertd``)
reads the type each one recorded, so the inversion matches the run.

Bilinear interpolation in float32 differs from float64 by a few 1e-6 of the intensity range; the
label maps the tests compare agree on >= 99.9 % of voxels (random weights, speckle labels).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import numpy as np
import torch
from monai.transforms import (Compose, ResampleToMatchd, Spacing, Spacingd, SpatialResample,
                              SpatialResampled)

log = logging.getLogger(__name__)
_DICT_KINDS = (Spacingd, SpatialResampled, ResampleToMatchd)


@contextlib.contextmanager
def float32_resampling(preprocessing, enabled: bool = True) -> Iterator[int]:
    """Within the block, ``preprocessing``'s float64 resampling transforms compute in float32.

    Args:
        preprocessing: a MONAI transform or ``Compose`` (nested Composes are walked), or None.
        enabled: False leaves everything as written (the block then does nothing).

    Yields:
        The number of transforms changed (0: nothing to change, or disabled).
    """
    changed: list[tuple[object, str, object]] = []
    if enabled and preprocessing is not None:
        for transform in _transforms(preprocessing):
            changed.extend(_lower(transform))
    if changed:
        log.debug("resampling in float32 in %d transform(s) of the preprocessing", len(changed))
    try:
        yield len(changed)
    finally:
        for owner, name, value in reversed(changed):
            setattr(owner, name, value)


def _transforms(preprocessing) -> list:
    if isinstance(preprocessing, Compose):
        return list(preprocessing.flatten().transforms)
    return [preprocessing]


def _lower(transform) -> list[tuple[object, str, object]]:
    """Set ``transform``'s float64 computation types to float32; what was there, to put back."""
    if isinstance(transform, _DICT_KINDS):
        before = tuple(transform.dtype)
        after = tuple(np.float32 if _is_float64(d) else d for d in before)
        if after != before:
            transform.dtype = after
            return [(transform, "dtype", before)]
        return []
    owner = transform.sp_resample if isinstance(transform, Spacing) else transform
    if isinstance(owner, SpatialResample) and _is_float64(owner.dtype):
        before = owner.dtype
        owner.dtype = np.float32
        return [(owner, "dtype", before)]
    return []


def _is_float64(dtype) -> bool:
    if dtype is None:
        return False
    if isinstance(dtype, torch.dtype):
        return dtype == torch.float64
    try:
        return np.dtype(dtype) == np.float64
    except TypeError:
        return False
