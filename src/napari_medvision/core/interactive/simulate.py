"""The simulated user of the interactive-segmentation literature (NoC protocol).

The first click goes to the structure's innermost voxel (largest distance to its border, in mm);
each next click goes to the innermost voxel of the largest error region (the biggest connected piece,
by voxel count, of the missed and the extra voxels): a missed region gets a positive click, an extra
one a negative click.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def innermost_voxel(mask: np.ndarray, spacing_xyz) -> tuple[tuple[int, int, int], float]:
    """``((z, y, x), depth_mm)`` of the voxel of ``mask`` farthest from its border (the image edge counts)."""
    padded = np.pad(mask.astype(bool), 1)
    depth = ndimage.distance_transform_edt(padded, sampling=tuple(spacing_xyz)[::-1])[1:-1, 1:-1, 1:-1]
    index = np.unravel_index(int(np.argmax(depth)), mask.shape)
    return tuple(int(i) for i in index), float(depth[index])


def next_click(prediction: np.ndarray, truth: np.ndarray, spacing_xyz) -> tuple[tuple[int, int, int], bool] | None:
    """The simulated user's next click ``((z, y, x), positive)``, or None when nothing is wrong."""
    truth, prediction = truth.astype(bool), prediction.astype(bool)
    missed, extra = truth & ~prediction, prediction & ~truth
    if not missed.any() and not extra.any():
        return None
    best = None
    for region, positive in ((missed, True), (extra, False)):
        labels, count = ndimage.label(region)
        if count:
            sizes = np.bincount(labels.ravel())[1:]
            biggest = int(np.argmax(sizes))
            if best is None or sizes[biggest] > best[0]:
                best = (sizes[biggest], labels == biggest + 1, positive)
    index, _ = innermost_voxel(best[1], spacing_xyz)
    return index, best[2]


def simulate_session(engine, image: np.ndarray, spacing_xyz, truth: np.ndarray, max_clicks: int = 20,
                     stop_dice: float = 1.0):
    """Clicks of the simulated user on one structure until ``max_clicks`` or ``stop_dice``.

    Args:
        engine: an :class:`~.engine.InteractiveEngine`.
        image: ``(z, y, x)`` values; truth: its 0/1 mask of the structure (same shape).

    Returns:
        ``(dices, seconds)``: the Dice after each click and the seconds each click took.
    """
    import time

    from ..metrics import dice
    from .prompts import Prompts

    prompts = Prompts(positive=[innermost_voxel(truth, spacing_xyz)[0]])
    prediction = np.zeros(truth.shape, np.uint8)
    dices, seconds = [], []
    for _ in range(max_clicks):
        start = time.perf_counter()
        prediction = engine.segment(image, spacing_xyz, prompts)
        seconds.append(time.perf_counter() - start)
        dices.append(dice(prediction, truth))
        click = next_click(prediction, truth, spacing_xyz)
        if dices[-1] >= stop_dice or click is None:
            break
        prompts = prompts.add(*click)
    return dices, seconds


def clicks_to_reach(dices: list[float], target: float, max_clicks: int = 20) -> int:
    """NoC: the number of clicks after which Dice first reached ``target`` (``max_clicks`` if never)."""
    return next((i + 1 for i, d in enumerate(dices) if d >= target), max_clicks)
