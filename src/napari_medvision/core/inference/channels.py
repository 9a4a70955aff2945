"""The model's input channels against the image's: grey and colour 2D images meet 1- and 3-channel models.

The image always goes to the bundle's preprocessing first exactly as ``LoadImage`` would give
it (some bundles make their channels themselves). Only when that fails, or gives a channel
count the network does not take, is a 2D image adapted, with a note saying so:

* a colour picture whose channels are all equal (a grey X-ray saved as RGB) goes as one grey
  channel to a one-channel model; a really coloured one is refused (its colours would be lost);
* a grey image goes to a three-channel (RGB-trained) model as three equal channels, which is
  what a grey radiograph saved as RGB would have been.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import ModelError
from ..volume import Volume
from .convert import run_preprocessing, to_metatensor


def prepare_input(model, bundle, volume: Volume, slice_index: int | None, notes: list[str],
                  source: dict | None = None) -> dict:
    """The bundle's preprocessing of ``volume`` (or of its slice ``slice_index``), channels checked.

    ``source``, when given, receives the image's own grid as handed to the preprocessing:
    ``"affine"`` (index to world, 4x4 tensor) and ``"shape"`` (spatial shape, channel-less).

    Returns:
        The preprocessed data dict; ``data["image"]`` is ``(bundle.in_channels, *spatial)``.

    Raises:
        ModelError: the channels cannot be made to fit, saying what the model expects.
    """
    wanted = bundle.in_channels
    failure = None
    try:
        data = run_preprocessing(model, {"image": _noted(to_metatensor(volume, slice_index), source)}, bundle.name)
        if data["image"].shape[0] == wanted:
            return data
        got = data["image"].shape[0]
    except ModelError as exc:
        failure, got = exc, None
    adapted = _adapted(bundle, volume, slice_index, wanted, notes) if slice_index is not None else None
    if adapted is None:
        if failure is not None:
            raise failure
        raise ModelError(f"'{bundle.name}' expects {wanted} input channel(s); the image gives {got}")
    data = run_preprocessing(model, {"image": _noted(to_metatensor(adapted, slice_index), source)}, bundle.name)
    if data["image"].shape[0] != wanted:
        raise ModelError(f"'{bundle.name}' expects {wanted} input channel(s); the image gives {data['image'].shape[0]}")
    return data


def _noted(image, source: dict | None):
    """``image``, its grid written into ``source`` (when given)."""
    if source is not None:
        source["affine"] = image.affine
        source["shape"] = tuple(int(n) for n in image.meta.get("spatial_shape", image.shape))
    return image


def _adapted(bundle, volume: Volume, slice_index: int, wanted: int, notes: list[str]) -> Volume | None:
    """The image with its channels made to fit ``wanted``, or None when there is no faithful way."""
    samples = volume.channels
    if samples is not None and wanted == 1:
        colours = samples[slice_index, ..., :3]
        if not np.all(colours == colours[..., :1]):
            raise ModelError(f"'{bundle.name}' takes one grey channel and this is a colour picture "
                             f"({samples.shape[-1]} channels that differ); save it as a greyscale image, "
                             "or use a model for colour images")
        notes.append("colour picture with equal channels given to the model as one grey channel")
        grey = samples[..., 0]
        return replace(volume, array=grey, channels=None, metadata=_mode(volume, "L"))
    if samples is None and wanted == 3:
        notes.append("grey image given to the colour (RGB) model as three equal channels")
        rgb = np.repeat(volume.array[..., np.newaxis], 3, axis=-1)
        return replace(volume, channels=rgb, metadata=_mode(volume, "RGB"))
    return None


def _mode(volume: Volume, mode: str) -> dict:
    metadata = dict(volume.metadata)
    if "picture" in metadata:
        metadata["picture"] = {**metadata["picture"], "mode": mode}
    return metadata
