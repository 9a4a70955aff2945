"""MONAI augmentation for segmentation training (fine-tuning and the sample recipes alike)."""

from __future__ import annotations

from typing import Sequence


def train_transforms(roi: Sequence[int], keys: Sequence[str] = ("image", "label")):
    """Crops around foreground, small affine, intensity jitter and noise, on channel-first items.

    ``roi``: crop size in voxels (the network's window). ``keys[0]`` is the image, ``keys[1]`` the
    label; any further keys (edit masks) follow the label's geometry. No left-right flips: they
    would put the liver on the spleen's side.
    """
    from monai.transforms import (
        Compose,
        RandAffined,
        RandCropByPosNegLabeld,
        RandGaussianNoised,
        RandScaleIntensityd,
        RandShiftIntensityd,
        SpatialPadd,
    )

    keys = list(keys)
    modes = ["bilinear"] + ["nearest"] * (len(keys) - 1)
    return Compose([
        SpatialPadd(keys, spatial_size=roi),
        RandCropByPosNegLabeld(keys, label_key=keys[1], spatial_size=roi, pos=3, neg=1, num_samples=2),
        RandAffined(keys, prob=0.3, rotate_range=(0.1, 0.1, 0.1), scale_range=(0.1, 0.1, 0.1),
                    mode=modes, padding_mode="border"),
        RandScaleIntensityd(keys[0], factors=0.1, prob=0.5),
        RandShiftIntensityd(keys[0], offsets=0.05, prob=0.5),
        RandGaussianNoised(keys[0], prob=0.2, std=0.01),
    ])
