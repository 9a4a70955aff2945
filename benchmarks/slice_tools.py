"""Slice tools on a label map of diagnostic size: seconds per tool, on the label's bounding box (what
the Annotate dock runs) against the same operation on the whole map (what it ran before).

A 512x512x300 map (78 M voxels, uint16) holding a liver-sized ellipsoid with a hole (label 1) and a
ball of another label (2); for "fill between slices" the liver is drawn on every tenth slice. Both
columns give the same map (``tests/core/test_slice_tools.py`` checks it); the table prints the
seconds and their ratio.

    PYTHONPATH=src .venv/bin/python benchmarks/slice_tools.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

SHAPE, SPACING_XYZ = (300, 512, 512), (0.75, 0.75, 1.5)


def label_map():
    z, y, x = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    labels = np.zeros(SHAPE, np.uint16)
    labels[((z - 150) / 60.0) ** 2 + ((y - 250) / 110.0) ** 2 + ((x - 180) / 120.0) ** 2 <= 1] = 1
    labels[140:160, 240:260, 170:190] = 0                                        # a hole
    labels[(z - 150) ** 2 + (y - 250) ** 2 + (x - 400) ** 2 <= 40 ** 2] = 2
    return labels


def whole_map(labels, tool, drawn):
    """The tool as it ran before: the operation and the merge back into the map, on the whole map."""
    source = drawn if tool == "interpolate" else labels
    mask = _operation(labels, tool, drawn)
    result = source.copy()
    free = (source == 1) | (source == 0)
    result[free & ~mask & (source == 1)] = 0
    result[free & mask] = 1
    return result


def _operation(labels, tool, drawn):
    mask = labels == 1
    if tool == "fill":
        return np.stack([ndimage.binary_fill_holes(p) for p in ndimage.binary_fill_holes(mask)])
    if tool == "keep":
        pieces, _ = ndimage.label(mask)
        return pieces == pieces[150, 250, 100]
    if tool == "smooth":
        sigma = [2.0 / s for s in SPACING_XYZ[::-1]]
        return ndimage.gaussian_filter(mask.astype(np.float32), sigma) >= 0.5
    from napari_medvision.core.interactive.slice_tools import _signed_distance

    mask = drawn == 1
    for lower, upper in zip(range(0, 290, 10), range(10, 300, 10)):
        low, high = _signed_distance(mask[lower]), _signed_distance(mask[upper])
        for k in range(lower + 1, upper):
            mask[k] = (1 - (k - lower) / 10) * low + (k - lower) / 10 * high <= 0
    return mask


def main() -> None:
    from napari_medvision.core.interactive import slice_tools

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    labels = label_map()
    drawn = labels.copy()
    drawn[(np.arange(SHAPE[0]) % 10 != 0)[:, None, None] & (drawn == 1)] = 0
    tools = {"fill": lambda: slice_tools.fill_holes(labels, 1),
             "keep": lambda: slice_tools.keep_component(labels, 1, (150, 250, 100)),
             "smooth": lambda: slice_tools.smooth(labels, 1, SPACING_XYZ),
             "interpolate": lambda: slice_tools.interpolate_slices(drawn, 1)}
    print(f"{'tool':<12} {'whole map s':>12} {'label box s':>12} {'ratio':>7}")
    for name, tool in tools.items():
        times = []
        for run in (lambda: whole_map(labels, name, drawn), tool):
            best = np.inf
            for _ in range(args.repeat):
                start = time.perf_counter()
                run()
                best = min(best, time.perf_counter() - start)
            times.append(best)
        print(f"{name:<12} {times[0]:>12.2f} {times[1]:>12.2f} {times[0] / times[1]:>6.1f}x", flush=True)


if __name__ == "__main__":
    main()
