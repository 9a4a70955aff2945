"""Scores interpolated to the image's grid one axis at a time, for an axis-aligned model grid.

When the model grid is the image's scaled, shifted and flipped along its own axes (the usual
``Orientationd`` + ``Spacingd`` preprocessing of an image whose axes are already the patient's),
each image voxel's position on the model grid is a function of its own index along each axis
alone. Linear interpolation with clamped borders (what ``Invertd`` does with ``grid_sample``) is
then three 1D interpolations in a row: a gather of two rows and a blend per axis, no per-voxel
sampling grid. Used by :mod:`.fast_labels` for models with few classes, where every voxel's scores
are interpolated; a slab of the image's first axis at a time.
"""

from __future__ import annotations

import math

import torch

#: Image voxels (times classes) per slab.
_SLAB_VALUES = 1 << 22


def axis_aligned(to_grid: torch.Tensor) -> bool:
    """Whether the image-index to model-index affine ``to_grid`` scales each axis on its own."""
    linear = to_grid[:-1, :-1]
    return bool(torch.count_nonzero(linear - torch.diag(torch.diagonal(linear))) == 0)


def label_map(scores: torch.Tensor, to_grid: torch.Tensor, image_shape, dtype: torch.dtype) -> torch.Tensor:
    """Argmax over channels of ``scores`` ``(C, *model grid)`` interpolated at every image voxel.

    Args:
        to_grid: axis-aligned (:func:`axis_aligned`) affine, image voxel index -> model grid index.
        image_shape: the image's spatial shape.
        dtype: the label map's integer type.

    Returns:
        ``(1, *image_shape)`` labels; ties go to the first channel.
    """
    image_shape = tuple(int(n) for n in image_shape)
    axes = [_axis(to_grid[a, a], to_grid[a, -1], image_shape[a], scores.shape[1 + a], scores.dtype)
            for a in range(len(image_shape))]
    labels = torch.empty((1, *image_shape), dtype=dtype)
    step = max(1, _SLAB_VALUES // max(1, scores.shape[0] * math.prod(image_shape[1:])))
    for start in range(0, image_shape[0], step):
        stop = min(start + step, image_shape[0])
        values = scores
        for axis, (low, high, weight) in enumerate(axes):
            if axis == 0:
                low, high, weight = low[start:stop], high[start:stop], weight[start:stop]
            values = _blend(values, 1 + axis, low, high, weight)
        labels[0, start:stop] = values.argmax(dim=0).to(dtype)
    return labels


def _axis(scale, shift, count: int, size: int, dtype):
    """Lower and upper model index and the upper one's weight for each of ``count`` image indices."""
    position = (scale * torch.arange(count, dtype=torch.float64) + shift).clamp(0, size - 1)
    low = position.floor().long().clamp(max=max(size - 2, 0))
    high = (low + 1).clamp(max=size - 1)
    return low, high, (position - low).to(dtype)


def _blend(values: torch.Tensor, dim: int, low, high, weight) -> torch.Tensor:
    shape = [1] * values.ndim
    shape[dim] = -1
    weight = weight.reshape(shape)
    lower = values.index_select(dim, low)
    return lower.add_(values.index_select(dim, high).sub_(lower).mul_(weight))
