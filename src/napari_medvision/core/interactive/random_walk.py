"""The model-free engine: a random walker with an intensity prior, on a crop around the clicks.

How one call works (every step on the crop only):

1. Intensity model per positive click: median and robust spread of the voxels around it
   (at least the image's noise level), so a structure of several tissues gets a model per part.
2. Crop: around the clicks, as far as the tissue stays alike (:mod:`.crop`); when the result touches
   a side of the crop, that side grows and the call runs again (at most ``regrow`` times).
3. Working grid: the crop smoothed and resampled to at most :data:`WORK_VOXELS` voxels.
4. Seeds: the positive clicks (structure); the negative clicks and the crop's border (background).
   Prior: how alike each voxel is to the nearest click model (a logistic of the distance in spreads,
   one half at :data:`ALIKE_SPREADS`); later clicks pull their neighbourhood to their side.
5. :func:`.walker.walk_with_prior`: the boundary falls where the image changes most between the seeds.
6. The probability, back on the crop's grid, over 0.5; holes filled, only the pieces that hold a
   positive click kept.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.transform import resize

from .base import InteractiveEngine
from .crop import choose_crop, click_statistics, grow_crop
from .prompts import Prompts
from .walker import walk_with_prior

#: Most voxels of the working grid: bounds the cost of a click.
WORK_VOXELS = 40 ** 3
#: Distance from a click model, in spreads, at which a voxel is as likely structure as not.
ALIKE_SPREADS = 2.5
#: Intensities are clipped to this many spreads: beyond it, every tissue is just "not alike".
CLIP_SPREADS = 6.0
#: How far (mm) a later click pushes the prior towards its own side (at least 1.5 voxels).
CLICK_REACH_MM = 6.0


class RandomWalkEngine(InteractiveEngine):
    """Random walker between the clicks with an intensity prior: no model, fits any modality."""

    name = "random-walker"
    description = "model-free: random walker between the clicks with an intensity prior (any modality)"

    def __init__(self, beta: float = 0.5, gamma: float = 0.1, regrow: int = 2):
        self.beta, self.gamma = beta, gamma
        self.regrow = regrow

    def segment(self, image: np.ndarray, spacing_xyz, prompts: Prompts) -> np.ndarray:
        spacing_zyx = np.asarray(spacing_xyz, float)[::-1]
        positive = prompts.positive if len(prompts.positive) else _box_centre(prompts)
        models = _click_models(image, positive, spacing_zyx)
        crop = choose_crop(image, spacing_zyx, Prompts(positive, prompts.negative, prompts.box), *models[0])
        for attempt in range(1 + self.regrow):
            offset = np.array([s.start for s in crop])
            mask = self._segment_crop(image[crop], spacing_zyx, positive - offset, prompts.negative - offset,
                                      None if prompts.box is None else prompts.box - offset,
                                      models)
            grown = grow_crop(crop, mask, image.shape, spacing_zyx) if prompts.box is None else None
            if grown is None or attempt == self.regrow:
                break
            crop = grown
        full = np.zeros(image.shape, np.uint8)
        full[crop] = mask
        return full

    def _segment_crop(self, block, spacing_zyx, positive, negative, box, models) -> np.ndarray:
        """0/1 mask on the crop ``block`` (clicks in crop indices; negatives outside it are ignored)."""
        inside = np.all((negative >= 0) & (negative < block.shape), axis=1)
        negative = negative[inside]
        factor = _working_factor(block.shape, spacing_zyx)
        work_shape = tuple(max(1, int(round(n / f))) for n, f in zip(block.shape, factor))
        sigma = np.maximum(factor / 2, 0.6) * (np.asarray(block.shape) > 1)
        work = resize(ndimage.gaussian_filter(block.astype(np.float32), sigma), work_shape, order=1,
                      anti_aliasing=False, preserve_range=True)
        scale = (np.asarray(work_shape) - 1) / np.maximum(np.asarray(block.shape) - 1, 1)
        to_work = lambda points: np.rint(np.asarray(points) * scale).astype(int).reshape(-1, 3)  # noqa: E731
        spread = float(np.median([s for _, s in models]))
        data = np.clip((work - models[0][0]) / spread, -CLIP_SPREADS, CLIP_SPREADS)
        seeds = self._seeds(work_shape, spacing_zyx / scale.clip(1e-6), to_work(positive), to_work(negative),
                            None if box is None else to_work(box))
        prior = _prior(work, models)
        work_spacing = spacing_zyx / scale.clip(1e-6)
        reach = max(CLICK_REACH_MM, 1.5 * float(spacing_zyx[1:].max()))
        if len(positive) > 1:
            prior = np.maximum(prior, _near(work_shape, work_spacing, to_work(positive[1:]), reach))
        if len(negative):
            prior = prior * (1.0 - _near(work_shape, work_spacing, to_work(negative), reach))
            alike = [p for p in negative if _alike(block[tuple(p)], models)]
            if alike:
                prior = prior * _nearer_positive(work_shape, work_spacing, to_work(positive), to_work(alike))
        probability = walk_with_prior(data, seeds, prior, beta=self.beta, gamma=self.gamma)
        mask = resize(probability, block.shape, order=1, preserve_range=True) > 0.5
        for points, value in ((negative, False), (positive, True)):
            mask[tuple(points.T)] = value
        return _clean(mask, positive)

    def _seeds(self, shape, spacing, positive, negative, box) -> np.ndarray:
        """Walker labels on the working grid: 1 structure, 2 background, 0 unknown."""
        seeds = np.zeros(shape, np.uint8)
        border = np.ones(shape, bool)
        border[tuple(slice(1, -1) if n > 2 else slice(0, 0) for n in shape)] = False
        seeds[border] = 2
        if box is not None:
            outside = np.ones(shape, bool)
            outside[tuple(slice(a, b + 1) for a, b in zip(box[0], box[1]))] = False
            seeds[outside] = 2
        for point in negative:
            seeds[tuple(point)] = 2
        for point in positive:
            seeds[tuple(point)] = 1
        return seeds


def _click_models(image, positive, spacing_zyx) -> list[tuple[float, float]]:
    """``(centre, spread)`` per tissue of the structure: the first click's, plus one for each later
    positive click whose voxel does not look like any model so far (spread at most the first's).

    A later click near the border lands on partial-volume voxels: a model of its own, with the wide
    spread of a mixed neighbourhood, would let the structure leak into its neighbours.
    """
    models = [click_statistics(image, positive[0][None], spacing_zyx)]
    for point in positive[1:]:
        value = float(image[tuple(point)])
        if min(abs(value - c) / s for c, s in models) > ALIKE_SPREADS:
            centre, spread = click_statistics(image, point[None], spacing_zyx)
            models.append((centre, min(spread, models[0][1])))
    return models


def _prior(work, models) -> np.ndarray:
    """Likelihood in [0, 1] that each working voxel is structure, from the click models.

    Negative clicks get no intensity model: the simulated user (and a real one) puts many of them
    on partial-volume voxels at the border, whose model would cut the structure's own edge away.
    """
    near = np.min([np.abs(work - c) / s for c, s in models], axis=0)
    return 1.0 / (1.0 + np.exp(2.0 * (near - ALIKE_SPREADS)))


def _near(shape, spacing, points, reach_mm: float) -> np.ndarray:
    """``exp(-(d / reach)^2)``, ``d`` the distance (mm) of each voxel to the nearest of ``points``.

    Later clicks mostly fix thin errors at the border, where the intensity prior is unsure: each
    click makes its own neighbourhood structure (+) or background (-), within a short reach.
    """
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij"), -1)
    nearest = np.min([np.sum((grid - p * spacing) ** 2, axis=-1) for p in points], axis=0)
    return np.exp(-nearest / reach_mm ** 2)


def _alike(value, models) -> bool:
    return min(abs(float(value) - c) / s for c, s in models) <= ALIKE_SPREADS


def _nearer_positive(shape, spacing, positive, negative) -> np.ndarray:
    """``dn^2 / (dp^2 + dn^2)``: how much nearer each voxel is to a positive than to a negative click.

    Used for negative clicks that look like the structure (a look-alike neighbour it leaked into):
    there the intensity prior cannot tell the two apart, so the clicks' positions do.
    """
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij"), -1)
    nearest = [np.min([np.sum((grid - p * spacing) ** 2, axis=-1) for p in points], axis=0)
               for points in (positive, negative)]
    return nearest[1] / np.maximum(nearest[0] + nearest[1], 1e-9)


def _working_factor(shape, spacing_zyx) -> np.ndarray:
    """Down-sampling factor per axis: near-isotropic voxels, at most :data:`WORK_VOXELS` of them."""
    extent = np.asarray(shape) * spacing_zyx
    target = max(float(np.prod(extent) / WORK_VOXELS) ** (1 / 3), float(spacing_zyx.min()))
    return np.maximum(np.floor(target / spacing_zyx + 1e-6), 1.0)


def _clean(mask: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Holes filled, only the connected pieces that hold a positive click."""
    mask = ndimage.binary_fill_holes(mask)
    labels, _ = ndimage.label(mask)
    keep = {int(labels[tuple(p)]) for p in positive} - {0}
    return np.isin(labels, list(keep)).astype(np.uint8) if keep else np.zeros(mask.shape, np.uint8)


def _box_centre(prompts: Prompts) -> np.ndarray:
    return ((prompts.box[0] + prompts.box[1]) // 2).reshape(1, 3)
