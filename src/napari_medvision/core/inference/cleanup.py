"""Label maps from network outputs, and their clean-up."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


def remove_small_components(labels: np.ndarray, min_voxels: float) -> np.ndarray:
    """Set to background every connected piece of any label smaller than ``min_voxels``."""
    cleaned = labels.copy()
    for value in np.unique(labels):
        if value == 0:
            continue
        pieces, count = ndimage.label(labels == value)
        sizes = np.bincount(pieces.ravel(), minlength=count + 1)
        small = np.flatnonzero(sizes < min_voxels)
        small = small[small > 0]
        if small.size:
            cleaned[np.isin(pieces, small)] = 0
    return cleaned


def channel_argmax(tensor: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """``torch.argmax(tensor, dim, keepdim=True)``, fast on the CPU.

    torch's CPU argmax over an outer axis (the channels of a ``(C, x, y, z)`` map) is about
    20x slower than ``max(...).indices``, which gives the same indices (first maximum on ties).
    """
    return torch.max(tensor, dim=dim, keepdim=True).indices
