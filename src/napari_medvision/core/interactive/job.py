"""Prompted segmentation as a backend job: what the Annotate dock runs in its worker process.

The dock names :data:`SEGMENT` to a compute backend (``core.backend``) for every click. The image
comes as a ``core.backend.transfer.Shared`` array (written to shared memory once per image, not
per click) or as a plain array; the job yields once before computing, the point where a click
superseded while it waited for the worker stops without computing.
"""

from __future__ import annotations

from typing import Generator

import numpy as np

from .engine import segment_prompts
from .prompts import Prompts

#: The named core function for ``ComputeBackend.run``.
SEGMENT = "napari_medvision.core.interactive.job:segment_job"


def segment_job(image, spacing_xyz, prompts: Prompts, engine: str | None = None, *, trusted: bool = False,
                label: str | None = None, device: str = "auto", origin=None,
                direction=None) -> Generator[str, None, np.ndarray]:
    """Yields one progress line, returns :func:`~.engine.segment_prompts`' uint8 0/1 mask of ``image.shape``.

    Args:
        image: ``(z, y, x)`` array, or anything ``numpy.asarray`` makes one of (read only).
        spacing_xyz: voxel size in mm, ``(x, y, z)``.
        prompts: clicks (and box) as voxel indices ``(z, y, x)``.
        engine: an engine's name, or an interactive bundle (registry name or folder); None: the best
            built-in engine that fits the image.
        trusted: the user trusts the bundle's own code (the trust gate refuses it otherwise).
        label: a DeepEdit bundle's label name the clicks are for (None: its first structure).
        device: where a bundle runs: ``auto``, ``cpu``, ``cuda``.
        origin, direction: the image's geometry (LPS), for bundles that reorient.
    """
    yield f"segmenting from {prompts.clicks} click(s)"
    return segment_prompts(np.asarray(image), spacing_xyz, prompts, engine, trusted=trusted, device=device,
                           label=label, origin=origin, direction=direction)
