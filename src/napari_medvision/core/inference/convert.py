"""Volume <-> MONAI MetaTensor, exactly as ``LoadImage`` would give it for the same file.

MONAI arrays have their spatial axes in ITK index order (x, y, z) and an affine to RAS
world; our Volume is (z, y, x) with LPS geometry. A PNG / JPEG / BMP picture is given as
MONAI's PILReader gives it: ``(width, height[, C])`` channel-last, identity affine, PIL's
header in the meta dict (see ``io.picture``), so a bundle's ``EnsureChannelFirstd``
(``channel_dim=2`` for colour bundles) sees what it was written for.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor

from ..volume import Volume

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def ras_affine(volume: Volume, spatial_dims: int = 3) -> np.ndarray:
    """Index (x, y[, z]) -> RAS mm affine, ``(spatial_dims + 1)`` square."""
    lps = np.eye(4)
    lps[:3, :3] = volume.direction * np.asarray(volume.spacing)
    lps[:3, 3] = volume.origin
    ras = _LPS_TO_RAS @ lps
    if spatial_dims == 2:
        return ras[np.ix_([0, 1, 3], [0, 1, 3])]
    return ras


def to_metatensor(volume: Volume, slice_index: int | None = None) -> MetaTensor:
    """A channel-less MetaTensor ``(x, y, z)`` of the volume, or ``(x, y)`` of one axial slice.

    A slice of a colour volume (:attr:`Volume.channels`) is ``(x, y, C)``, channel-last, as
    ``LoadImage`` gives colour images; a picture file's single slice is exactly PILReader's.
    """
    if slice_index is not None and "picture" in volume.metadata and volume.shape[0] == 1:
        return _picture_metatensor(volume)
    if slice_index is not None and volume.channels is not None:
        array = volume.channels[slice_index].transpose(1, 0, 2)
        affine = ras_affine(volume, 2)
        affine[:2, 2] += (ras_affine(volume)[:2, 2] * slice_index)
        meta = {"original_affine": affine, "spatial_shape": np.asarray(array.shape[:2]), "original_channel_dim": -1,
                "filename_or_obj": str(volume.metadata.get("path") or "in-memory"), "space": "RAS"}
        return MetaTensor(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)),
                          affine=torch.as_tensor(affine, dtype=torch.float64), meta=meta)
    if slice_index is None:
        array, dims = volume.array.transpose(2, 1, 0), 3
        affine = ras_affine(volume)
    else:
        array, dims = volume.array[slice_index].T, 2
        affine = ras_affine(volume, 2)
        affine[:2, 2] += (ras_affine(volume)[:2, 2] * slice_index)  # keep the slice's own position in-plane
    array = np.ascontiguousarray(array, dtype=np.float32)
    meta = {"original_affine": affine, "spatial_shape": np.asarray(array.shape), "original_channel_dim": "no_channel",
            "filename_or_obj": str(volume.metadata.get("path") or "in-memory"), "space": "RAS"}
    return MetaTensor(torch.from_numpy(array), affine=torch.as_tensor(affine, dtype=torch.float64), meta=meta)


def _picture_metatensor(volume: Volume) -> MetaTensor:
    """PILReader's layout: ``numpy.asarray(picture)`` with axes 0 and 1 swapped, float32, identity affine."""
    from ..io.picture import picture_meta

    samples = volume.array[0] if volume.channels is None else volume.channels[0]
    array = np.ascontiguousarray(np.swapaxes(samples, 0, 1), dtype=np.float32)
    return MetaTensor(torch.from_numpy(array), affine=torch.eye(4, dtype=torch.float64),
                      meta=picture_meta(volume, channels_last=volume.channels is not None))


def to_zyx(tensor, spatial_dims: int = 3) -> np.ndarray:
    """A channel-first ``(C, x, y[, z])`` tensor's channels as numpy ``(C, z, y, x)`` (or ``(C, y, x)``)."""
    array = tensor.detach().cpu().numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)
    order = (0, 3, 2, 1) if spatial_dims == 3 else (0, 2, 1)
    return np.ascontiguousarray(array.transpose(order))


def run_preprocessing(model, data: dict, bundle_name: str) -> dict:
    """The bundle's preprocessing on ``data``; a failure becomes one clear :class:`ModelError`."""
    from ..errors import ModelError

    if model.preprocessing is None:
        return {key: value[None] for key, value in data.items()}
    try:
        return model.preprocessing(data)
    except Exception as exc:  # MONAI wraps every transform error in a RuntimeError
        cause = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        first = (str(cause).strip().splitlines() or [""])[0]
        raise ModelError(f"'{bundle_name}': its preprocessing failed on this image "
                         f"({type(cause).__name__}: {first})") from None
