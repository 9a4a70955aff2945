"""PNG / JPEG / BMP pictures, with their pixels exactly as MONAI's ``LoadImage`` reads them.

MONAI reads these formats with its ``PILReader``: ``numpy.asarray(PIL.Image.open(f))`` with
the two spatial axes swapped, so a picture is ``(width, height)`` or, with colour samples,
``(width, height, C)`` channel-last, in the file's own sample type (``LoadImage`` then casts
to float32), and its meta dict holds ``format``, ``mode``, ``width`` and ``height``. We read
the samples with the same call, so a bundle's preprocessing sees the same numbers (JPEG
decoders differ in their last bit, hence PIL and not ITK), and keep the picture header
in ``metadata["picture"]``. The geometry (spacing from a PNG's ``pHYs`` chunk) stays as
SimpleITK reports it, like every other file we read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UnreadableFileError

#: Endings MONAI's PILReader claims (its ``verify_suffix``).
PIL_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
#: ITK-Rec. 601 luminance weights, for the grey array measurements and windows use.
_LUMA = np.array([0.299, 0.587, 0.114])


def read_picture_samples(path: Path) -> tuple[np.ndarray, dict]:
    """The samples and PIL header of a picture, as MONAI's PILReader gets them before its axis swap.

    Returns:
        ``samples`` ``(height, width)`` or ``(height, width, C)`` in the file's sample type, and
        ``{"format", "mode", "width", "height"}``.

    Raises:
        UnreadableFileError: PIL cannot decode the file.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            samples = np.asarray(picture)
            header = {"format": picture.format, "mode": picture.mode,
                      "width": picture.width, "height": picture.height}
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UnreadableFileError(f"'{path.name}' cannot be decoded as a picture: {exc}") from None
    return samples, header


def grey_and_channels(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The grey ``(y, x)`` array we measure and window, and the colour samples ``(y, x, C)`` or None.

    A grey picture is its own grey array; a colour one keeps its samples untouched for models
    and gets the luminance of its first three channels (a grey+alpha picture: its grey channel).
    """
    if samples.ndim == 2:
        return samples, None
    if samples.shape[-1] >= 3:
        grey = (samples[..., :3].astype(np.float32) @ _LUMA.astype(np.float32)).astype(np.float32)
    else:
        grey = samples[..., 0]
    return grey, samples


def picture_meta(volume, channels_last: bool) -> dict:
    """The meta dict MONAI's ``LoadImage`` gives a picture (``spatial_shape`` is ``(width, height)``)."""
    header = dict(volume.metadata["picture"])
    return {**header, "spatial_shape": np.asarray((header["width"], header["height"])),
            "original_channel_dim": -1 if channels_last else float("nan"),
            "filename_or_obj": str(volume.metadata.get("path") or "in-memory")}
