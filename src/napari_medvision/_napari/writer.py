"""Writer contributions: label and image layers to .nii.gz / .nrrd / .mha with the source header."""

from __future__ import annotations

from ..core.io import write_volume
from .layers import volume_from_layer


def write_labels(path: str, data, meta: dict) -> list[str]:
    """Write a Labels layer as a label map with its source geometry."""
    return [str(write_volume(volume_from_layer(data, meta), path, labels=True))]


def write_image(path: str, data, meta: dict) -> list[str]:
    """Write an Image layer with its source geometry and dtype."""
    return [str(write_volume(volume_from_layer(data, meta), path))]
