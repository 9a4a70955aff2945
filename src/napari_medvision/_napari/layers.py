"""Volume <-> napari layer data, keeping the exact ITK geometry.

Every layer we create gets ``affine`` = :meth:`Volume.napari_affine` and carries
its source geometry in ``metadata[GEOMETRY_KEY]``, so derived layers (labels,
probabilities) are written back with the identical header.
"""

from __future__ import annotations

import re

import numpy as np

from ..core.errors import GeometryMismatchError
from ..core.volume import Volume, geometry_from_napari_affine
from ..core.windowing import default_limits

GEOMETRY_KEY = "medvision_geometry"
#: napari's world axes are LPS millimetres in (z, y, x) order; named so the dims slider says "z", not "-3".
AXIS_LABELS = ("z", "y", "x")
_LABEL_NAME_HINT = re.compile(r"(label|seg|mask|annot)", re.IGNORECASE)


def geometry_metadata(volume: Volume) -> dict:
    """What a layer needs to be written back exactly: shape, spacing, origin, direction, source."""
    return {
        GEOMETRY_KEY: {
            "shape": list(volume.shape),
            "spacing": list(volume.spacing),
            "origin": list(volume.origin),
            "direction": [float(v) for v in volume.direction.ravel()],
        },
        "modality": volume.modality,
        "source": volume.metadata.get("path"),
        # A picture's PIL header: a model run from the layer gets the picture as MONAI reads the file.
        **({"picture": dict(volume.metadata["picture"])} if "picture" in volume.metadata else {}),
        **{key: volume.metadata[key] for key in ("window", "invert_display", "spacing_source")
           if volume.metadata.get(key) is not None},
    }


def image_layer_data(volume: Volume, name: str | None = None, **kwargs) -> tuple:
    """``(data, kwargs, "image")`` with world affine and a modality-aware window.

    A colour picture (``volume.channels``) is an RGB(A) layer ``(1, y, x, C)`` showing its samples.
    """
    if volume.channels is not None and volume.channels.shape[-1] in (3, 4):
        return _rgb_layer_data(volume, name, **kwargs)
    low, high = default_limits(volume.array, volume.modality, volume.metadata.get("window"))
    metadata = geometry_metadata(volume)
    # Computed here (readers run in workers) so the GUI thread never scans the voxels for it.
    metadata["data_range"] = [float(np.min(volume.array)), float(np.max(volume.array))]
    layer_kwargs = {
        "name": name or "image",
        "affine": volume.napari_affine(),
        "axis_labels": AXIS_LABELS,
        "metadata": metadata,
        # MONOCHROME1 radiographs keep their values (low = white): shown inverted, bone is white.
        "colormap": "gray_r" if volume.metadata.get("invert_display") else "gray",
        "contrast_limits": [low, high],
        **kwargs,
    }
    return volume.array, layer_kwargs, "image"


def _rgb_layer_data(volume: Volume, name: str | None, **kwargs) -> tuple:
    samples = volume.channels
    metadata = geometry_metadata(volume)
    metadata["data_range"] = [float(np.min(volume.array)), float(np.max(volume.array))]
    layer_kwargs = {"name": name or "image", "affine": volume.napari_affine(), "metadata": metadata, "rgb": True,
                    **kwargs}
    if not np.issubdtype(samples.dtype, np.uint8):
        layer_kwargs.setdefault("contrast_limits", [float(samples.min()), float(samples.max()) or 1.0])
    return samples, layer_kwargs, "image"


def labels_layer_data(volume: Volume, name: str | None = None,
                      label_names: dict[int, str] | None = None, **kwargs) -> tuple:
    """``(data, kwargs, "labels")``; ``label_names`` show as a feature under the cursor."""
    array = volume.array
    if not np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.int32)
    layer_kwargs = {
        "name": name or "labels",
        "affine": volume.napari_affine(),
        "axis_labels": AXIS_LABELS,
        "metadata": {**geometry_metadata(volume), "label_names": {str(k): v for k, v in (label_names or {}).items()}},
        **kwargs,
    }
    if label_names:
        values = [0, *sorted(label_names)]
        layer_kwargs["features"] = {"index": values, "name": ["background"] + [label_names[v] for v in values[1:]]}
    return array, layer_kwargs, "labels"


def looks_like_label_map(volume: Volume, name: str) -> bool:
    """A label map by its name (``*label*``, ``*seg*``, ``*mask*``) and whole-number values."""
    array = volume.array
    if not _LABEL_NAME_HINT.search(name):
        return False
    if np.issubdtype(array.dtype, np.integer):
        return True
    return np.issubdtype(array.dtype, np.floating) and bool(np.array_equal(array, np.round(array)))


def volume_from_layer(data, meta: dict) -> Volume:
    """The Volume to write for a layer's ``data`` and state ``meta``.

    The geometry recorded at reading time wins (bit-exact); a layer without it
    (e.g. drawn from scratch) gets the geometry of its data-to-world transform.

    Raises:
        GeometryMismatchError: the transform cannot be stored in an image header.
    """
    array = np.asarray(data)
    channels = None
    if meta.get("rgb"):
        from ..core.io.picture import grey_and_channels

        channels = array if array.ndim == 4 else array[np.newaxis]
        array = grey_and_channels(channels[0])[0][np.newaxis]
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3:
        raise GeometryMismatchError(f"only 2D and 3D layers can be written, this one is {array.ndim}D")
    layer_meta = meta.get("metadata") or {}
    extra = {"picture": dict(layer_meta["picture"]), "dimension": 2} if "picture" in layer_meta else {}
    geometry = layer_meta.get(GEOMETRY_KEY)
    if geometry and tuple(geometry["shape"]) == array.shape:
        return Volume(array, geometry["spacing"], geometry["origin"], np.reshape(geometry["direction"], (3, 3)),
                      dict(extra), channels=channels)
    spacing, origin, direction = geometry_from_napari_affine(data_to_world_matrix(meta))
    return Volume(array, spacing, origin, direction, dict(extra), channels=channels)


def data_to_world_matrix(meta: dict) -> np.ndarray:
    """4x4 data-to-world matrix (last three axes) of a layer state: ``affine @ physical``."""
    from napari.utils.transforms import Affine

    parts = {k: meta[k] for k in ("scale", "translate", "rotate", "shear") if meta.get(k) is not None}
    physical = Affine(**parts).affine_matrix if parts else np.eye(4)
    affine = meta.get("affine")
    affine = np.eye(physical.shape[0]) if affine is None else np.asarray(getattr(affine, "affine_matrix", affine), float)
    full = affine @ physical
    out = np.eye(4)
    n = min(full.shape[0] - 1, 3)      # a 2D layer's y, x become the last two of (z, y, x)
    out[3 - n:3, 3 - n:3] = full[-1 - n:-1, -1 - n:-1]
    out[3 - n:3, 3] = full[-1 - n:-1, -1]
    return out


def layer_volume(layer) -> Volume:
    """The Volume (data + exact geometry) behind a napari layer."""
    state = {"metadata": layer.metadata, "affine": layer.affine.affine_matrix, "scale": layer.scale,
             "translate": layer.translate, "rotate": layer.rotate, "shear": layer.shear,
             "rgb": bool(getattr(layer, "rgb", False))}
    volume = volume_from_layer(np.asarray(layer.data), state)
    volume.metadata["modality"] = layer.metadata.get("modality")
    return volume
