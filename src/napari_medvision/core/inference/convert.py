"""Volume <-> MONAI MetaTensor, exactly as ``LoadImage`` with the ITK reader would give it.

MONAI arrays are channel-first with spatial axes in ITK index order (x, y, z) and
an affine to RAS world; our Volume is (z, y, x) with LPS geometry.
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
    """A channel-less MetaTensor ``(x, y, z)`` of the volume, or ``(x, y)`` of one axial slice."""
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
