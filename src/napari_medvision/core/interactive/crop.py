"""Where an engine works: a crop around the prompts, sized to the structure they point at.

A click costs about the same whatever the scan's size: engines look only at a box around the clicks.
Its first guess reaches, along each axis, as far as the tissue around the positive clicks stays alike
(rays cast from each click), plus a margin; an engine whose result touches a side of the crop grows
that side (:func:`grow_crop`) and runs again.
"""

from __future__ import annotations

import numpy as np

from .prompts import Prompts

#: Most reach of a crop past the clicks, mm (a liver fits), and most voxels per axis.
MAX_REACH_MM = 120.0
MAX_CROP_VOXELS = 256
#: Margin added around the estimated structure, mm (and at least 3 voxels).
MARGIN_MM = 10.0


def noise_level(block: np.ndarray) -> float:
    """Robust noise standard deviation of ``block`` (MAD of neighbour differences along x)."""
    steps = np.diff(block.astype(np.float32), axis=-1).ravel()
    if steps.size == 0:
        return 1e-6
    return max(1.4826 * float(np.median(np.abs(steps - np.median(steps)))) / np.sqrt(2), 1e-6)


def click_statistics(image: np.ndarray, points: np.ndarray, spacing_zyx, radius_mm: float = 2.0,
                     floor: float | None = None) -> tuple[float, float]:
    """``(centre, spread)`` of the intensities in small balls around ``points`` (median, MAD).

    Args:
        image: ``(z, y, x)`` values.
        points: ``(N, 3)`` voxel indices ``(z, y, x)``.
        spacing_zyx: voxel size in mm, array order.
        radius_mm: ball radius (at least 2 voxels in-plane).
        floor: least spread returned (default: the image's noise level near the clicks, at least
            a hundredth of the intensity range there).
    """
    values = np.concatenate([_ball_values(image, p, spacing_zyx, radius_mm) for p in points])
    centre = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - centre)))
    if floor is None:
        lo, hi = np.maximum(points.min(0) - 16, 0), points.max(0) + 17
        block = image[tuple(slice(a, b) for a, b in zip(lo, hi))]
        # A noise-free image (a drawing, a synthetic or label-like scan) has no noise to measure:
        # then a hundredth of the local range, so that smoothed borders still look alike.
        low, high = np.percentile(block, (1, 99))
        floor = max(noise_level(block), 0.01 * float(high - low))
    return centre, max(spread, floor)


def _ball_values(image, point, spacing_zyx, radius_mm):
    spacing_zyx = np.asarray(spacing_zyx, float)
    radius_mm = max(radius_mm, float(spacing_zyx[1:].max()))
    reach = np.floor(radius_mm / spacing_zyx + 1e-6).astype(int)
    lo, hi = np.maximum(point - reach, 0), np.minimum(point + reach + 1, image.shape)
    block = image[tuple(slice(a, b) for a, b in zip(lo, hi))]
    grids = np.ogrid[tuple(slice(a - p, b - p) for a, b, p in zip(lo, hi, point))]
    inside = sum((g * s) ** 2 for g, s in zip(grids, spacing_zyx)) <= radius_mm ** 2
    return block[inside].astype(float)


def choose_crop(image: np.ndarray, spacing_zyx, prompts: Prompts, centre: float, spread: float,
                tolerance: float = 3.0) -> tuple[slice, slice, slice]:
    """Slices ``(z, y, x)`` of the first crop an engine works on.

    With a box: the box plus a margin. Otherwise the clicks' bounding box, grown along each axis
    as far as rays from the positive clicks stay within ``tolerance`` spreads of ``centre``, plus a
    margin (at most :data:`MAX_REACH_MM` past the clicks).
    """
    spacing_zyx = np.asarray(spacing_zyx, float)
    margin = np.ceil(MARGIN_MM / spacing_zyx).astype(int) + 3
    if prompts.box is not None:
        return _clip(prompts.box[0] - margin, prompts.box[1] + margin, image.shape)
    points = np.vstack([prompts.positive, prompts.negative])
    lo, hi = points.min(0).copy(), points.max(0).copy()
    reach = np.ceil(MAX_REACH_MM / spacing_zyx).astype(int)
    for point in prompts.positive:
        for axis in range(3):
            for sign in (-1, 1):
                run = _ray_length(image, point, axis, sign, reach[axis], centre, tolerance * spread)
                if sign < 0:
                    lo[axis] = min(lo[axis], point[axis] - run)
                else:
                    hi[axis] = max(hi[axis], point[axis] + run)
    extra = np.ceil((hi - lo) * 0.15).astype(int)
    return _limit(lo - margin - extra, hi + margin + extra, points, prompts.positive, image.shape)


def _ray_length(image, point, axis, sign, reach, centre, band) -> int:
    """Voxels from ``point`` along ``axis`` (``sign`` way) until 2 in a row leave ``centre ± band``."""
    index = list(int(v) for v in point)
    index[axis] = slice(None)
    line = image[tuple(index)].astype(float)
    line = line[point[axis]:][:reach + 1] if sign > 0 else line[:point[axis] + 1][::-1][:reach + 1]
    outside = np.abs(line - centre) > band
    both = outside[1:] & outside[:-1]
    return int(np.argmax(both)) if both.any() else len(line) - 1


def grow_crop(crop, mask: np.ndarray, shape, spacing_zyx) -> tuple[slice, slice, slice] | None:
    """A bigger crop where ``mask`` (on ``crop``) touches a side that is not the image's edge; else None."""
    spacing_zyx = np.asarray(spacing_zyx, float)
    lo, hi = np.array([s.start for s in crop]), np.array([s.stop - 1 for s in crop])
    where = np.argwhere(mask)
    if not len(where):
        return None
    near = np.ceil(2.0 / spacing_zyx).astype(int) + 1
    step = np.maximum(hi - lo + 1, np.ceil(20.0 / spacing_zyx).astype(int)) // 2
    new_lo = np.where((where.min(0) < near) & (lo > 0), lo - step, lo)
    new_hi = np.where((where.max(0) > hi - lo - near) & (hi < np.asarray(shape) - 1), hi + step, hi)
    if np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):
        return None
    grown = _clip(new_lo, new_hi, shape)
    return grown if grown != tuple(crop) else None


def _limit(lo, hi, points, positive, shape):
    """At most :data:`MAX_CROP_VOXELS` per axis around the clicks, but always every positive click
    (clicks farther apart make a bigger crop: the engines' working grids bound the cost). A negative
    click outside the crop is left out."""
    positive = np.asarray(positive).reshape(-1, 3)
    middle = (points.min(0) + points.max(0)) // 2
    half = MAX_CROP_VOXELS // 2
    lo = np.minimum(np.maximum(lo, middle - half), positive.min(0))
    hi = np.maximum(np.minimum(hi, middle + half), positive.max(0))
    return _clip(lo, hi, shape)


def _clip(lo, hi, shape) -> tuple[slice, slice, slice]:
    lo, hi = np.maximum(lo, 0), np.minimum(np.asarray(hi) + 1, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
