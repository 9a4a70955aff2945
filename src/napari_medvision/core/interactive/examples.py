"""Training examples for the click-conditioned network: structures, cubes around them, simulated clicks.

Used by the sample's recipe (``samples/interactive.py``) and by fine-tuning on a case store
(:mod:`.finetune`). A :class:`Source` is one scan with its labelled structures; an example is a cube
(:mod:`.cube`) around a target, either a labelled structure or a random structure inserted into the
scan: a smooth blob (a randomly rotated ellipsoid deformed by low-frequency noise) with a random
contrast to its surroundings, its own texture, sometimes a darker or brighter core, and a
partial-volume edge, made on the scan's own voxel grid (so thick slices blur it as they blur anatomy).
Clicks come from the benchmark's simulated user (:mod:`.simulate`) over several rounds with the
network's own predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .crop import noise_level
from .cube import Cube, cube_around, network_input, sample
from .simulate import innermost_voxel, next_click

#: Most extra click rounds per example (each: the network's prediction, then the user's next click).
MAX_ROUNDS = 4


@dataclass
class Source:
    """One scan to draw examples from."""

    name: str
    image: np.ndarray
    spacing_zyx: np.ndarray
    #: Boxes ``(lo, hi)`` and masks of the labelled structures usable as targets.
    structures: list = field(default_factory=list)
    #: Voxel indices ``(N, 3)`` where a random structure may be centred (tissue, not air).
    tissue: np.ndarray = None
    #: The case's edit mask on the scan's grid (1 where the user corrected the model), or None.
    edits: np.ndarray | None = None
    #: How often each structure is drawn, relative (None: all equally often).
    structure_weights: np.ndarray | None = None


def make_source(name, image, spacing_zyx, label=None, values=()) -> Source:
    """A :class:`Source`, its structures the connected pieces (>= 30 voxels) of ``label == v``."""
    image = np.asarray(image, np.float32)
    structures = []
    for value in values if label is not None else ():
        pieces, count = ndimage.label(label == value)
        for index, box in enumerate(ndimage.find_objects(pieces)):
            mask = pieces[box] == index + 1
            if mask.sum() >= 30:
                lo = np.array([s.start for s in box])
                structures.append((lo, lo + np.array(mask.shape) - 1, box, mask))
    threshold = _otsu(image)
    tissue = np.argwhere(image > threshold)
    step = max(1, len(tissue) // 20000)
    return Source(name, image, np.asarray(spacing_zyx, float), structures, tissue[::step])


def example(source: Source, rng: np.random.Generator, structure_chance: float = 0.35):
    """One training example: ``(cube intensities, cube truth)``, both ``(n, n, n)``, or None."""
    drawn = edited_example(source, rng, structure_chance)
    return None if drawn is None else drawn[:2]


def edited_example(source: Source, rng: np.random.Generator, structure_chance: float = 0.35):
    """:func:`example` plus the cube of the case's edit mask (bool ``(n, n, n)``; all False for a
    random structure or a case without edits), or None."""
    if source.structures and rng.random() < structure_chance:
        count = len(source.structures)
        weights = source.structure_weights
        index = rng.integers(count) if weights is None else rng.choice(count, p=np.asarray(weights) / np.sum(weights))
        lo, hi, box, mask = source.structures[index]
        cube = _training_cube(lo, hi, source.spacing_zyx, rng)
        truth = np.zeros(source.image.shape, np.float32)
        truth[box] = mask
        block, truth = sample(source.image, cube, source.spacing_zyx), sample(truth, cube, source.spacing_zyx, order=0)
        edited = (sample(source.edits, cube, source.spacing_zyx, order=0) > 0.5 if source.edits is not None
                  else np.zeros(truth.shape, bool))
        return block, truth > 0.5, edited
    drawn = random_structure(source, rng)
    return None if drawn is None else (*drawn, np.zeros(drawn[1].shape, bool))


def random_structure(source: Source, rng: np.random.Generator):
    """A random blob inserted around a tissue voxel: ``(cube intensities, cube truth)`` or None."""
    spacing = source.spacing_zyx
    centre = source.tissue[rng.integers(len(source.tissue))]
    radius = float(np.exp(rng.uniform(np.log(4.0), np.log(45.0))))
    radii = radius * rng.uniform(0.55, 1.45, 3)
    reach = np.ceil(radii.max() * 1.6 / spacing).astype(int) + 1
    cube = _training_cube(centre - reach // 2, centre + reach // 2, spacing, rng)
    box = cube.footprint(source.image.shape, spacing)
    block = source.image[box].copy()
    grids = np.meshgrid(*[(np.arange(s.start, s.stop) - c) * d for s, c, d in zip(box, centre, spacing)],
                        indexing="ij")
    points = np.stack([g.ravel() for g in grids])
    rotation = _random_rotation(rng)
    level = (((rotation @ points) / radii[:, None]) ** 2).sum(0).reshape(block.shape)
    wobble = ndimage.gaussian_filter(rng.standard_normal(block.shape).astype(np.float32),
                                     np.maximum(radius * 0.35 / spacing, 0.5))
    wobble /= max(float(wobble.std()), 1e-6)
    level = level + rng.uniform(0.0, 0.45) * wobble
    mask = level < 1.0
    if mask.sum() < 20:
        return None
    block = _paint(block, mask, level, spacing, rng)
    start = np.array([s.start for s in box], float)
    local = Cube(tuple(np.asarray(cube.centre) - start), cube.side_mm, cube.size)
    return sample(block, local, spacing), sample(mask.astype(np.float32), local, spacing, order=0) > 0.5


def _paint(block, mask, level, spacing, rng) -> np.ndarray:
    """``block`` with the blob ``mask`` painted in: contrast, texture, a core, a partial-volume edge."""
    noise = noise_level(block)
    around = block[~mask] if (~mask).any() else block.ravel()
    spread = 1.4826 * float(np.median(np.abs(around - np.median(around)))) + noise
    under = float(np.median(block[mask]))
    sign = 1.0 if rng.random() < 0.5 else -1.0
    contrast = max(rng.uniform(1.5, 9.0) * noise, rng.uniform(0.3, 1.8) * spread)
    value = under + sign * contrast
    texture = ndimage.gaussian_filter(rng.standard_normal(block.shape).astype(np.float32),
                                      rng.uniform(0.0, 1.5))
    texture *= rng.uniform(0.3, 2.0) * noise / max(float(texture.std()), 1e-6)
    keep = rng.uniform(0.0, 0.5)
    inside = value + texture + keep * (block - under)
    if rng.random() < 0.3:
        core = level < rng.uniform(0.15, 0.5)
        inside = np.where(core, inside + rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0) * contrast, inside)
    alpha = ndimage.gaussian_filter(mask.astype(np.float32), 0.6 * (np.asarray(block.shape) > 1))
    return (1 - alpha) * block + alpha * inside


def _training_cube(lo, hi, spacing, rng):
    """The cube the engine's second pass would choose, with its size and centre jittered."""
    return cube_around(lo, hi, spacing, scale=rng.uniform(1.2, 2.1), pad_mm=rng.uniform(4.0, 16.0),
                       shift=rng.uniform(-0.12, 0.12, 3))


def _random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def _otsu(image) -> float:
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(image[::2, ::2, ::2] if min(image.shape) > 4 else image))


def clicks_for(network, block, truth, rng, rounds: int):
    """Simulated clicks ``(positive (N, 3), negative (M, 3))`` on the cube after ``rounds`` rounds.

    The first click at the innermost voxel (half the time; otherwise any voxel at least half as deep,
    a less careful user), then per round the network's prediction and the next click at the innermost
    voxel of its largest error.
    """
    import torch

    if rng.random() < 0.5:
        first, _ = innermost_voxel(truth, (1.0, 1.0, 1.0))
    else:
        depth = ndimage.distance_transform_edt(np.pad(truth, 1))[1:-1, 1:-1, 1:-1]
        deep = np.argwhere(depth >= 0.5 * depth.max())
        first = tuple(deep[rng.integers(len(deep))])
    positive, negative = [first], []
    device = next(network.parameters()).device
    for _ in range(rounds):
        inputs = network_input(block, positive, negative)
        with torch.no_grad():
            prediction = network(torch.from_numpy(inputs)[None].to(device))[0, 0].float().cpu().numpy() > 0
        click = next_click(prediction, truth, (1.0, 1.0, 1.0))
        if click is None:
            break
        (positive if click[1] else negative).append(click[0])
    return np.array(positive), np.array(negative).reshape(-1, 3)


def training_batch(network, sources, weights, rng, batch: int, structure_chance: float = 0.35):
    """``(inputs (B, 4, n, n, n), targets (B, 1, n, n, n))`` torch tensors, with simulated clicks.

    Args:
        sources: :class:`Source` list; weights: the chance of each (None: equal).
        structure_chance: how often a labelled structure is the target (else a random one).
    """
    inputs, targets, _ = edited_batch(network, sources, weights, rng, batch, structure_chance)
    return inputs, targets


def edited_batch(network, sources, weights, rng, batch: int, structure_chance: float = 0.35):
    """:func:`training_batch` plus ``edited (B, 1, n, n, n)``: 1 where the case's edit mask is (float32).

    Draws the same examples and clicks as :func:`training_batch` from the same ``rng``.
    """
    import torch

    inputs, targets, edits = [], [], []
    while len(inputs) < batch:
        source = sources[rng.choice(len(sources), p=weights)]
        drawn = edited_example(source, rng, structure_chance)
        if drawn is None or drawn[1].sum() < 8:
            continue
        block, truth, edited = drawn
        flips = tuple(axis for axis in range(3) if rng.random() < 0.5)
        if flips:
            block, truth, edited = (np.flip(a, flips).copy() for a in (block, truth, edited))
        rounds = int(rng.integers(1, MAX_ROUNDS + 1)) if rng.random() < 0.5 else 0
        positive, negative = clicks_for(network, block, truth, rng, rounds)
        inputs.append(network_input(block, positive, negative))
        targets.append(truth[None].astype(np.float32))
        edits.append(edited[None].astype(np.float32))
    return tuple(torch.from_numpy(np.stack(a)) for a in (inputs, targets, edits))
