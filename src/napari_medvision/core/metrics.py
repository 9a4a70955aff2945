"""Segmentation and classification metrics on numpy label maps and scores."""

from __future__ import annotations

import numpy as np


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks; NaN when both are empty."""
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
    """Area under the ROC curve (Mann-Whitney U, ties counted half)."""
    scores, truth = np.asarray(scores, float), np.asarray(truth, bool)
    positives, negatives = scores[truth], scores[~truth]
    if len(positives) == 0 or len(negatives) == 0:
        return float("nan")
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(positives) * len(negatives)))
