"""Segmentation and classification metrics on numpy label maps and scores."""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import compute_roc_auc


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks; NaN when both are empty.

    Plain numpy on purpose: MONAI's ``compute_dice`` gives the same value (it scores two empty
    masks 1) in float32 and takes 15-20x longer on the CPU (0.5 s against 0.03 s for a
    6.5 M-voxel mask), which ``medvision evaluate`` would pay per label and case.
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return float("nan") if total == 0 else float(2 * np.logical_and(a, b).sum() / total)


def dice_per_label(prediction: np.ndarray, truth: np.ndarray, labels: dict[int, str]) -> dict[str, float]:
    """Dice of each named label value (NaN where it is absent from both)."""
    return {name: dice(prediction == value, truth == value) for value, name in labels.items()}


def label_volumes_ml(labels: np.ndarray, spacing, names: dict[int, str]) -> dict[str, float]:
    """Volume in millilitres of each named label."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=max(names, default=0) + 1)
    return {name: float(counts[value]) * voxel_ml for value, name in names.items() if value < len(counts)}


def roc_auc(scores, truth) -> float:
    """Area under the ROC curve (MONAI's ``compute_roc_auc``: ties count half); NaN without both classes."""
    truth = np.asarray(truth, bool)
    if truth.all() or not truth.any():
        return float("nan")
    scores = torch.as_tensor(np.asarray(scores, np.float64))
    return float(compute_roc_auc(scores, torch.as_tensor(truth, dtype=torch.int64)))
