"""The model-free engine: a random walker with an intensity prior, on a crop around the clicks.

How one call works (every step on the crop only):

1. Intensity model: median and robust spread of the voxels around the first positive click (at
   least the image's noise level), plus one for each later positive click that looks like no model
   so far (a second tissue of the structure, or a partial-volume voxel at its border).
2. Crop: around the clicks, as far as the tissue stays alike (:mod:`.crop`); when the result touches
   a side of the crop, that side grows and the call runs again (at most ``regrow`` times).
3. Working grid: the crop smoothed and resampled to at most :data:`WORK_VOXELS` voxels.
4. Seeds: the first click and its alike neighbours (structure), the other positive clicks, with a
   box its middle third; the negative clicks, the crop's sides that lie inside
   the image and everything outside a box (background).
   Prior: the structure's intensity density against the background's (the crop's sides and the
   negative clicks), ``f / (f + b)``; a later tissue's model (sampled around every click that looks
   most like it) holds only near those clicks (everywhere when the second and third clicks on it lie
   on either side of the first: a core inside it); each click also pulls its neighbourhood to its side,
   at most half the way to the nearest click of the other sign.
5. :func:`.walker.walk_with_prior`: the boundary falls where the image changes most between the seeds.
6. The probability, back on the crop's grid, over 0.5; holes filled, only the pieces that hold a
   positive click kept.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.transform import resize

from .base import InteractiveEngine, fill_holes
from .crop import choose_crop, click_statistics, grow_crop
from .prompts import Prompts
from .walker import walk_with_prior

#: Most voxels of the working grid: bounds the cost of a click.
WORK_VOXELS = 40 ** 3
#: Distance from a click model, in spreads, at which a voxel is as likely structure as not.
ALIKE_SPREADS = 3.0
#: Intensities are clipped to this many spreads for the edges: far enough that a blurred boundary
#: to a very different tissue (a lung nodule, -850 HU around it) keeps its gradient out to half-way.
CLIP_SPREADS = 24.0
#: Most bins of the intensity histograms of the prior.
MAX_BINS = 4096
#: How far (mm) a later click pushes the prior towards its own side (see :func:`_reach`).
CLICK_REACH_MM = 6.0
#: How much longer a path is for each spread of intensity it climbs per finest voxel, when a negative
#: click on look-alike tissue is told apart by position (:func:`_nearer_positive`): with 2, the real
#: scans and both phantoms took fewer clicks than with straight lines (0.5, 1 and 4 were tried).
GEODESIC_WEIGHT = 2.0


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
        crop = choose_crop(image, spacing_zyx, Prompts(positive, prompts.negative, prompts.box), *models[0][0])
        for attempt in range(1 + self.regrow):
            offset = np.array([s.start for s in crop])
            mask = self._segment_crop(image[crop], spacing_zyx, positive - offset, prompts.negative - offset,
                                      None if prompts.box is None else prompts.box - offset,
                                      models, _open_sides(crop, image.shape))
            grown = grow_crop(crop, mask, image.shape, spacing_zyx) if prompts.box is None else None
            if grown is None or attempt == self.regrow:
                break
            crop = grown
        full = np.zeros(image.shape, np.uint8)
        full[crop] = mask
        return full

    def _segment_crop(self, block, spacing_zyx, positive, negative, box, click_models, open_sides) -> np.ndarray:
        """0/1 mask on the crop ``block`` (clicks in crop indices; negatives outside it are ignored)."""
        models, points = [m for m, _ in click_models], positive[[i for _, i in click_models]]
        inside = np.all((negative >= 0) & (negative < block.shape), axis=1)
        negative = negative[inside]
        factor = _working_factor(block.shape, spacing_zyx)
        work_shape = tuple(max(1, int(round(n / f))) for n, f in zip(block.shape, factor))
        sigma = _smoothing(factor, spacing_zyx) * (np.asarray(block.shape) > 1)
        work = resize(ndimage.gaussian_filter(block.astype(np.float32), sigma), work_shape, order=1,
                      anti_aliasing=False, preserve_range=True)
        scale = (np.asarray(work_shape) - 1) / np.maximum(np.asarray(block.shape) - 1, 1)
        to_work = lambda points: np.rint(np.asarray(points) * scale).astype(int).reshape(-1, 3)  # noqa: E731
        spread = float(np.median([s for _, s in models]))
        data = np.clip((work - models[0][0]) / spread, -CLIP_SPREADS, CLIP_SPREADS)
        work_spacing = spacing_zyx / scale.clip(1e-6)
        seeds = self._seeds(work_shape, work_spacing, to_work(positive), to_work(negative),
                            None if box is None else to_work(box), open_sides)
        sides = seeds == 2
        sides[tuple(to_work(negative).T)] = False
        _grow_first_seed(seeds, work, to_work(positive[:1])[0], models[0])
        unlike = np.array([p for p in negative if not _alike(block[tuple(p)], models[:1])]).reshape(-1, 3)
        prior = _relative_prior(work, to_work(positive[:1]), to_work(unlike), sides, models[:1], work_spacing)
        owner = _owners(block, positive, click_models)
        reach = _model_reach(positive, spacing_zyx)
        for number, model in enumerate(models[1:], 1):
            mine = np.flatnonzero(owner == number)   # the clicks on this tissue (never the first click)
            local = _relative_prior(work, to_work(positive[mine]), to_work(unlike), sides, [model], work_spacing)
            if _surrounds_first(positive, mine, spacing_zyx):
                prior = np.maximum(prior, local)   # the structure's own tissue: it holds everywhere
                continue
            prior = np.maximum(prior, local * _near(work_shape, work_spacing, to_work(positive[mine]), reach[mine - 1]))
        if len(positive) > 1:
            reach = _reach(positive[1:], negative, spacing_zyx)
            prior = np.maximum(prior, _near(work_shape, work_spacing, to_work(positive[1:]), reach))
        if len(negative):
            reach = _reach(negative, positive, spacing_zyx)
            prior = prior * (1.0 - _near(work_shape, work_spacing, to_work(negative), reach))
            alike = [p for p in negative if _alike(block[tuple(p)], models)]   # like any tissue of the structure
            if alike:
                prior = prior * _nearer_positive(data, work_spacing, to_work(positive), to_work(alike))
        probability = walk_with_prior(data, seeds, prior, beta=self.beta, gamma=self.gamma)
        mask = resize(probability, block.shape, order=1, preserve_range=True) > 0.5
        for points, value in ((negative, False), (positive, True)):
            mask[tuple(points.T)] = value
        return _clean(mask, positive, negative)

    def _seeds(self, shape, spacing, positive, negative, box, open_sides) -> np.ndarray:
        """Walker labels on the working grid: 1 structure, 2 background, 0 unknown.

        The crop's sides inside the image are background; a side on the image's edge is not (a
        structure cut by the field of view, or filling a small image, reaches it). With a box,
        everything outside it is background and its middle third structure (:func:`_seed_box_core`).
        """
        seeds = np.zeros(shape, np.uint8)
        for axis, (low, high) in enumerate(open_sides):
            if shape[axis] > 2:
                for side, is_open in ((0, low), (-1, high)):
                    if is_open:
                        seeds[(slice(None),) * axis + (side,)] = 2
        if box is not None:
            outside = np.ones(shape, bool)
            outside[tuple(slice(a, b + 1) for a, b in zip(box[0], box[1]))] = False
            seeds[outside] = 2
        for point in negative:
            seeds[tuple(point)] = 2
        for point in positive:
            seeds[tuple(point)] = 1
        if box is not None:
            _seed_box_core(seeds, box)
        return seeds


def _grow_first_seed(seeds, work, point, model) -> None:
    """Make the first click's 6-neighbours structure seeds where they look like it (within
    :data:`ALIKE_SPREADS`): a one-voxel seed loses against the crop's sides (the walker's small-seed
    bias) and a small lesion came out as a few voxels."""
    centre, spread = model
    for axis in range(3):
        for step in (-1, 1):
            neighbour = point.copy()
            neighbour[axis] += step
            if 0 <= neighbour[axis] < work.shape[axis] and seeds[tuple(neighbour)] == 0 \
                    and abs(work[tuple(neighbour)] - centre) <= ALIKE_SPREADS * spread:
                seeds[tuple(neighbour)] = 1


def _seed_box_core(seeds, box) -> None:
    """Make the box's middle third along each axis structure seeds where no click seeded it.

    A box says the structure fills its middle (that inner box lies within the ellipsoid the box
    holds): seeded only at its centre, the walker's small-seed bias against the background all
    round the box gave a small lesion's core (phantom lesions from a box: Dice 0.2-0.6, now 0.8-0.9).
    Not only the voxels that look like the centre: a lesion with a darker core lost the gain then.
    A negative click there stays a background seed.
    """
    low, high = np.asarray(box[0], float), np.asarray(box[1], float)
    third = (high - low) / 3.0
    core = seeds[tuple(slice(int(np.floor(a)), int(np.ceil(b)) + 1) for a, b in zip(low + third, high - third))]
    core[core == 0] = 1


def _open_sides(crop, shape) -> list[tuple[bool, bool]]:
    """Per axis, whether the crop's low and high sides lie inside the image (not on its edge)."""
    return [(s.start > 0, s.stop < n) for s, n in zip(crop, shape)]


def _smoothing(factor, spacing_zyx) -> np.ndarray:
    """Gaussian sigma (voxels) before down-sampling: half the factor, and at least 0.6 of the finest
    spacing in mm (a thick slice is not blurred into its neighbours)."""
    spacing_zyx = np.asarray(spacing_zyx, float)
    least = 0.6 * float(spacing_zyx.min()) / spacing_zyx
    return np.maximum(factor / 2, least)


def _relative_prior(work, positive, negative, sides, models, spacing) -> np.ndarray:
    """``f / (f + b)`` per working voxel: ``f`` the intensity density of the structure (near the
    ``positive`` clicks of ``models``), ``b`` that of the background (the crop's open sides and near the ``negative``
    clicks, those that do not look like the structure: a look-alike is told apart by position).

    A prior that calls every tissue within a few spreads of a click "alike" lets a lesion a spread
    brighter than its organ leak into the whole organ, and cuts a blurred boundary at the core; set
    against the background's own intensities, the organ is less likely structure than the lesion, and
    a voxel half-way to a very different tissue is undecided (the edges place the boundary).
    """
    spread = float(np.median([s for _, s in models]))
    background = [work[sides]] + [work[tuple(p)].reshape(1) for p in negative]
    background = [b for b in background if b.size]
    if not background:
        return _prior(work, models)
    background = np.concatenate(background)
    foreground = np.concatenate([_ball(work, p, spacing) for p in positive])
    if sides.sum() < foreground.size:
        # Too few background voxels to be a density (the crop is the whole image and only a few
        # negative clicks say what the background is): a tissue like neither the structure nor
        # those clicks would be undecided (f and b both ~0) and the structure leaked into it.
        return np.minimum(_ratio(work, foreground, background, spread), _prior(work, models))
    return _ratio(work, foreground, background, spread)


def _ratio(work, foreground, background, spread) -> np.ndarray:
    """``f / (f + b)`` per voxel of ``work``, from smoothed histograms of the two samples."""
    lo, hi = float(work.min()) - 3 * spread, float(work.max()) + 3 * spread
    width = max(spread / 4, (hi - lo) / MAX_BINS)   # an image of flat regions has a spread near 0
    edges = np.arange(lo, hi + width, width)
    density = []
    for values in (foreground, background):
        counts, _ = np.histogram(values, edges)
        smooth = ndimage.gaussian_filter1d(counts.astype(float), 4.0, mode="constant")
        density.append(smooth / max(smooth.sum(), 1e-12) + 1e-4 / len(counts))
    ratio = density[0] / (density[0] + density[1])
    where = np.clip(np.digitize(work, edges) - 1, 0, len(ratio) - 1)
    return ratio[where]


def _ball(work, point, spacing, radius_mm: float = 3.0) -> np.ndarray:
    """Working-grid values within ``radius_mm`` of ``point`` (at least the voxel itself)."""
    reach = np.floor(radius_mm / np.asarray(spacing) + 1e-6).astype(int)
    lo, hi = np.maximum(point - reach, 0), np.minimum(point + reach + 1, work.shape)
    return work[tuple(slice(a, b) for a, b in zip(lo, hi))].ravel()


def _click_models(image, positive, spacing_zyx) -> list[tuple[tuple[float, float], int]]:
    """``((centre, spread), click)`` per tissue of the structure: the first click's, plus one for each
    later positive click (its index in ``positive``) whose voxel looks like no model so far (spread
    at most the first's).

    A later click near the border lands on partial-volume voxels, and one in a second tissue of a
    tumour on a tissue its neighbours may share: such a model holds only near its own click.
    """
    models = [(click_statistics(image, positive[0][None], spacing_zyx), 0)]
    for index, point in enumerate(positive[1:], 1):
        value = float(image[tuple(point)])
        if min(abs(value - c) / s for (c, s), _ in models) > ALIKE_SPREADS:
            centre, spread = click_statistics(image, point[None], spacing_zyx)
            models.append(((centre, min(spread, models[0][0][1])), index))
    return models


def _owners(block, positive, click_models) -> np.ndarray:
    """Per positive click, the index of the click model it looks most like (in spreads); each model's
    own click is its own.

    A later model's sample and reach are those of all its clicks: a second tissue of a structure (a
    kidney's cortex around its medulla, a tumour's rim around its core) grows with each click on it.
    With its own click's sample alone, clicks on the rest of that tissue (brighter than that click, but
    nearer to it than to any other model) added only their few millimetres each.
    """
    models = [model for model, _ in click_models]
    owner = np.array([int(np.argmin([abs(float(block[tuple(p)]) - c) / s for c, s in models])) for p in positive])
    owner[[index for _, index in click_models]] = np.arange(len(models))
    return owner


def _prior(work, models) -> np.ndarray:
    """Likelihood in [0, 1] that each working voxel is structure, from the click models alone: the
    prior when there is no background to compare with (the crop is the whole image, no negative click).
    """
    near = np.min([np.abs(work - c) / s for c, s in models], axis=0)
    return 1.0 / (1.0 + np.exp(np.minimum(2.0 * (near - ALIKE_SPREADS), 60.0)))


def _near(shape, spacing, points, reach_mm) -> np.ndarray:
    """``max_i exp(-(d_i / reach_i)^2)``, ``d_i`` the distance (mm) of each voxel to ``points[i]``.

    Later clicks mostly fix thin errors at the border, where the intensity prior is unsure: each
    click makes its own neighbourhood structure (+) or background (-), within a short reach.
    """
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij"), -1)
    reach_mm = np.broadcast_to(np.asarray(reach_mm, float), (len(points),))
    return np.max([np.exp(-np.sum((grid - p * spacing) ** 2, axis=-1) / r ** 2)
                   for p, r in zip(points, reach_mm)], axis=0)


def _reach(points, others, spacing_zyx) -> np.ndarray:
    """Reach (mm) of each click in ``points``: :data:`CLICK_REACH_MM`, but at most half the way to
    the nearest click of the other sign in ``others`` (and at least one in-plane voxel).

    A correction next to a click of the other sign (a thin error at a small lesion's border, one
    thick slice away) must not undo that click: with a fixed reach, one negative click at the border
    of a 7 mm lesion wiped the whole lesion out.
    """
    floor = float(spacing_zyx[1:].min())
    reach = np.full(len(points), max(CLICK_REACH_MM, floor))
    if len(others):
        gaps = np.sqrt((((points[:, None, :] - others[None, :, :]) * spacing_zyx) ** 2).sum(-1))
        reach = np.minimum(reach, np.maximum(gaps.min(1) / 2, floor))
    return reach


def _model_reach(points, spacing_zyx) -> np.ndarray:
    """Reach (mm) of the intensity model of each later click in ``points`` (the first one's is global):
    its distance to the first click, at least twice :data:`CLICK_REACH_MM`: the structure reaches at
    least that far.

    Negative clicks do not shorten it. One unlike the model is told apart by intensity; one like it
    by position, along paths (:func:`_nearer_positive`). Cut to half the way to the nearest negative
    click, the model of a structure whose intensity drifts along the scan (a bias field: two click
    models) held only near its click, and the structure collapsed to the slices around the first
    click (real prostate insert: Dice 0.86 -> 0.44 on a negative click on its brighter rim).
    """
    first = np.sqrt((((points[1:] - points[0]) * spacing_zyx) ** 2).sum(-1))
    return np.maximum(first, 2 * CLICK_REACH_MM)


#: Clicks 2 and 3 on one later tissue this far apart as seen from the first click (cosine): the first
#: click's tissue is a core inside that one (:func:`_surrounds_first`).
OPPOSITE_COSINE = -0.5


def _surrounds_first(positive, mine, spacing_zyx) -> bool:
    """Whether the second and third positive clicks (``positive[1]``, ``positive[2]``) both belong to this
    later tissue (``mine``, indices into ``positive``) and lie on opposite sides of the first click
    (more than 120 degrees apart as seen from it).

    Then the first click landed on a core inside the structure (a kidney's sinus fat, a tumour's
    necrosis: the simulated user's first click goes to the innermost voxel), and the tissue around it
    is the structure's own: its model holds over the whole crop, as the first one's does. Held only
    near its clicks, each click on it added a few millimetres (hard-sinus CT phantom kidneys: NoC@85
    9.8, now 3). Only the early clicks count: later clicks on partial-volume borders, on opposite
    sides of a lesion, made such a border model leak (phantom NoC@90 4.8 -> 5.2).
    """
    early = mine[mine <= 2]
    if len(early) < 2:
        return False
    direction = (positive[early] - positive[0]) * spacing_zyx
    direction = direction / np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-9)
    return float(direction[0] @ direction[1]) < OPPOSITE_COSINE


def _alike(value, models) -> bool:
    return min(abs(float(value) - c) / s for c, s in models) <= ALIKE_SPREADS


def _nearer_positive(data, spacing, positive, negative) -> np.ndarray:
    """``dn^2 / (dp^2 + dn^2)``: how much nearer each voxel is to a positive than to a negative click,
    along paths that pay for the intensity steps they cross (``data`` in spreads; see
    :data:`GEODESIC_WEIGHT`).

    Used for negative clicks that look like the structure (a look-alike neighbour it leaked into):
    there the intensity prior cannot tell the two apart, so the clicks' positions do. By straight
    lines, the split is the plane half-way between the clicks: a negative click on a kidney's cortex
    beside a spleen cut the spleen in half (Dice 0.82 -> 0.68). A path from that click into the spleen
    crosses the step at their border, so the split follows the border.
    """
    from skimage.graph import MCP_Geometric

    squared = np.zeros(data.shape)
    for axis in range(data.ndim):
        if data.shape[axis] > 1:   # a 2D image's working grid has one slice
            squared += np.gradient(data, spacing[axis], axis=axis) ** 2
    costs = 1.0 + GEODESIC_WEIGHT * np.sqrt(squared) * float(np.min(spacing))   # spreads per finest voxel
    nearest = []
    for points in (positive, negative):
        distance, _ = MCP_Geometric(costs, sampling=tuple(spacing)).find_costs([tuple(int(v) for v in p) for p in points])
        nearest.append(distance ** 2)
    return nearest[1] / np.maximum(nearest[0] + nearest[1], 1e-9)


def _working_factor(shape, spacing_zyx) -> np.ndarray:
    """Down-sampling factor per axis: near-isotropic voxels, at most :data:`WORK_VOXELS` of them."""
    extent = np.asarray(shape) * spacing_zyx
    target = max(float(np.prod(extent) / WORK_VOXELS) ** (1 / 3), float(spacing_zyx.min()))
    return np.maximum(np.floor(target / spacing_zyx + 1e-6), 1.0)


def _clean(mask: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """Holes filled (not those that hold a negative click), only the connected pieces that hold a
    positive click."""
    mask = fill_holes(mask, negative)
    labels, _ = ndimage.label(mask)
    keep = {int(labels[tuple(p)]) for p in positive} - {0}
    return np.isin(labels, list(keep)).astype(np.uint8) if keep else np.zeros(mask.shape, np.uint8)


def _box_centre(prompts: Prompts) -> np.ndarray:
    return ((prompts.box[0] + prompts.box[1]) // 2).reshape(1, 3)
