"""Label maps from network outputs, and their clean-up."""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
import torch


def remove_small_components(labels: np.ndarray, min_mm3: float, spacing) -> np.ndarray:
    """Set to background every connected piece of any label smaller than ``min_mm3``.

    Args:
        labels: label map ``(z, y, x)``.
        min_mm3: smallest piece kept, in cubic millimetres.
        spacing: voxel size in mm (any axis order: only the voxel volume is used).

    Pieces are face-connected (6 neighbours in 3D), each label on its own: SimpleITK's
    ``ConnectedComponent`` and ``RelabelComponent``, which drops pieces under a voxel count.
    """
    min_voxels = math.ceil(min_mm3 / float(np.prod(spacing)))   # size < x  <=>  size < ceil(x) for whole sizes
    cleaned = labels.copy()
    for value in np.unique(labels):
        if value == 0:
            continue
        mask = labels == value
        pieces = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.view(np.uint8)), False)
        kept = sitk.GetArrayFromImage(sitk.RelabelComponent(pieces, minimumObjectSize=min_voxels)) > 0
        cleaned[mask & ~kept] = 0
    return cleaned


def channel_argmax(tensor: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """``torch.argmax(tensor, dim, keepdim=True)``, fast on the CPU.

    torch's CPU argmax over an outer axis (the channels of a ``(C, x, y, z)`` map) is about
    20x slower than ``max(...).indices``, which gives the same indices (first maximum on ties).
    """
    return torch.max(tensor, dim=dim, keepdim=True).indices
