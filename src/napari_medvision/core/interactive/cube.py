"""The network's view of a structure: a cube in mm around it, resampled to a fixed grid, and back.

The click-conditioned network (:mod:`.click_unet`) sees every structure the same way, whatever the
scan's spacing: a cube, equal in mm along each axis, around the structure and its clicks, sampled at
``size`` voxels per axis (isotropic voxels), the intensities normalised within the cube, plus two
guidance channels built from the clicks. Its output goes back onto the scan's own grid. Training
(``samples/interactive.py``) builds its examples with these same functions, so the network sees at
inference exactly what it learned on.

Every index here is in array order ``(z, y, x)``; ``spacing_zyx`` is the voxel size in mm in that order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Voxels per axis of the network's grid.
CUBE_VOXELS = 48
#: Smallest and largest cube side, mm.
MIN_SIDE_MM, MAX_SIDE_MM = 24.0, 320.0
#: Cube side around a structure of extent ``E`` mm (the largest of its three): ``E * SCALE + PAD_MM``.
SCALE, PAD_MM = 1.5, 10.0
#: Standard deviation of the guidance Gaussians, in cube voxels (DeepEdit uses 3 on its 128^3 grid).
GUIDANCE_SIGMA = 1.5
#: Intensity channels are clipped to this many spreads.
CLIP = 4.0


@dataclass(frozen=True)
class Cube:
    """A cube of side ``side_mm`` centred at the (fractional) voxel index ``centre`` of a scan."""

    centre: tuple[float, float, float]
    side_mm: float
    size: int = CUBE_VOXELS

    def scale(self, spacing_zyx) -> np.ndarray:
        """Scan voxels per cube voxel, along ``(z, y, x)``."""
        return (self.side_mm / self.size) / np.asarray(spacing_zyx, float)

    def offset(self, spacing_zyx) -> np.ndarray:
        """Scan index of cube voxel ``(0, 0, 0)``'s centre."""
        return np.asarray(self.centre, float) + (0.5 - self.size / 2) * self.scale(spacing_zyx)

    def to_cube(self, points_zyx, spacing_zyx) -> np.ndarray:
        """Scan indices ``(N, 3)`` -> rounded cube indices ``(N, 3)`` (may fall outside the cube)."""
        points = np.asarray(points_zyx, float).reshape(-1, 3)
        return np.rint((points - self.offset(spacing_zyx)) / self.scale(spacing_zyx)).astype(int)

    def footprint(self, shape, spacing_zyx) -> tuple[slice, slice, slice]:
        """Slices of the scan voxels the cube covers (clipped to the scan)."""
        half = self.size / 2 * self.scale(spacing_zyx)
        lo = np.maximum(np.floor(np.asarray(self.centre) - half), 0).astype(int)
        hi = np.minimum(np.ceil(np.asarray(self.centre) + half) + 1, shape).astype(int)
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, np.maximum(hi, lo + 1)))


def cube_around(lo_zyx, hi_zyx, spacing_zyx, scale: float = SCALE, pad_mm: float = PAD_MM,
                shift=(0.0, 0.0, 0.0)) -> Cube:
    """The cube around the box of voxels ``lo_zyx..hi_zyx`` (inclusive): side ``extent * scale + pad``.

    Args:
        shift: move of the centre, as fractions of the side (training jitters it).
    """
    spacing_zyx = np.asarray(spacing_zyx, float)
    lo, hi = np.asarray(lo_zyx, float), np.asarray(hi_zyx, float)
    extent = float(((hi - lo + 1) * spacing_zyx).max())
    side = float(np.clip(extent * scale + pad_mm, MIN_SIDE_MM, MAX_SIDE_MM))
    centre = (lo + hi) / 2 + np.asarray(shift, float) * side / spacing_zyx
    return Cube(tuple(float(c) for c in centre), side)


def sample(image: np.ndarray, cube: Cube, spacing_zyx, order: int = 1) -> np.ndarray:
    """``image`` resampled onto the cube's grid ``(size, size, size)`` float32 (edge values outside).

    Down-sampling smooths first (a Gaussian of about half the step), so small texture does not alias.
    """
    scale = cube.scale(spacing_zyx)
    box = cube.footprint(image.shape, spacing_zyx)
    block = image[box].astype(np.float32)
    sigma = np.where(scale > 1.0, 0.5 * (scale - 1.0), 0.0) * (np.asarray(block.shape) > 1)
    if order and np.any(sigma > 0):
        block = ndimage.gaussian_filter(block, sigma)
    offset = cube.offset(spacing_zyx) - np.array([s.start for s in box])
    return ndimage.affine_transform(block, scale, offset=offset, output_shape=(cube.size,) * 3, order=order,
                                    mode="nearest").astype(np.float32)


def paste(values: np.ndarray, cube: Cube, shape, spacing_zyx,
          above: float | None = None) -> tuple[tuple[slice, ...], np.ndarray]:
    """Cube-grid ``values`` back on the scan's grid: ``(slices, values on them)``.

    Linear interpolation; scan voxels outside the cube get 0. The slices are the cube's footprint,
    or with ``above``, only the part of it where a value can exceed ``above`` (around the cube voxels
    over it; every scan voxel left out would be at most ``above``): for a mask, on a big scan, most
    of a large cube's footprint need not be computed.
    """
    scale = cube.scale(spacing_zyx)
    box = cube.footprint(shape, spacing_zyx)
    over = np.argwhere(values > above) if above is not None else np.zeros((0, 3))
    if len(over):
        offset = cube.offset(spacing_zyx)
        low = np.floor(offset + (over.min(0) - 1) * scale).astype(int)
        high = np.ceil(offset + (over.max(0) + 1) * scale).astype(int) + 1
        low = np.clip(low, [s.start for s in box], [s.stop - 1 for s in box])
        high = np.clip(high, low + 1, [s.stop for s in box])
        box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
    start = np.array([s.start for s in box], float)
    inverse = 1.0 / scale
    offset = (start - cube.offset(spacing_zyx)) * inverse
    out_shape = tuple(s.stop - s.start for s in box)
    back = ndimage.affine_transform(values.astype(np.float32), inverse, offset=offset, output_shape=out_shape,
                                    order=1, mode="constant", cval=0.0)
    return box, back


def normalise(block: np.ndarray, first_positive) -> np.ndarray:
    """Two intensity channels ``(2, n, n, n)``: the cube z-scored (robustly), and centred on the first click.

    Args:
        block: the cube's intensities.
        first_positive: cube index ``(z, y, x)`` of the first positive click (values near it set the centre).
    """
    low, median, high = np.percentile(block, (1, 50, 99))
    clipped = np.clip(block, low, high)
    spread = max(float(clipped.std()), 1e-3 * max(abs(high - low), 1e-6), 1e-6)
    z = (clipped - median) / spread
    p = np.clip(np.asarray(first_positive, int), 0, np.asarray(block.shape) - 1)
    near = block[tuple(slice(max(int(c) - 1, 0), int(c) + 2) for c in p)]
    centred = (block - float(np.median(near))) / spread
    return np.clip(np.stack([z, centred]), -CLIP, CLIP).astype(np.float32)


def guidance(points, size: int = CUBE_VOXELS, sigma: float = GUIDANCE_SIGMA) -> np.ndarray:
    """One guidance channel ``(size,) * 3``: 1 at each click, Gaussian-smoothed, scaled to 0..1.

    The definition of ``monai.apps.deepedit.transforms.AddGuidanceSignalDeepEditd`` (clicks outside the
    grid are left out; no click gives zeros).
    """
    signal = np.zeros((size,) * 3, np.float32)
    points = np.asarray(points, int).reshape(-1, 3)
    inside = points[np.all((points >= 0) & (points < size), axis=1)]
    if not len(inside):
        return signal
    signal[tuple(inside.T)] = 1.0
    signal = ndimage.gaussian_filter(signal, sigma)
    low, high = float(signal.min()), float(signal.max())
    return (signal - low) / (high - low) if high > low else signal


def network_input(block: np.ndarray, positive, negative) -> np.ndarray:
    """The network's input ``(4, n, n, n)``: two intensity channels, positive and negative guidance.

    Args:
        block: cube intensities; positive, negative: cube indices ``(N, 3)`` of the clicks.
    """
    positive = np.asarray(positive, int).reshape(-1, 3)
    return np.concatenate([normalise(block, positive[0]), guidance(positive, block.shape[0])[None],
                           guidance(negative, block.shape[0])[None]]).astype(np.float32)
