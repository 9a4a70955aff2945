"""The one interface of every prompted-segmentation engine.

An engine is arrays in, arrays out: the image ``(z, y, x)``, its spacing and the prompts give a
0/1 mask on the same grid. Engines keep no state between calls, so a call can run in any thread or
process (a worker process sends them the arrays) and a new click simply starts a new call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from .prompts import Prompts


def fill_holes(mask: np.ndarray, negative) -> np.ndarray:
    """``mask`` with its holes filled, but for the holes that hold a negative click (``(N, 3)`` indices
    into ``mask``): a negative click on a vessel, a cyst or a fatty core inside the structure says
    that hole is not part of it, and filling it again undid the click (the same click, over and over)."""
    from scipy import ndimage

    filled = ndimage.binary_fill_holes(mask)
    negative = np.asarray(negative, int).reshape(-1, mask.ndim)
    if len(negative):
        holes, _ = ndimage.label(filled & ~mask)
        clicked = {int(holes[tuple(p)]) for p in negative} - {0}
        if clicked:
            filled &= ~np.isin(holes, list(clicked))
    return filled


class InteractiveEngine(ABC):
    """Clicks (and an optional box) on an image -> a 0/1 mask of one structure."""

    #: Short name used by ``--model`` and the dock.
    name: str = "engine"
    #: One line for users: what it is, when it is chosen.
    description: str = ""

    def fits(self, image: np.ndarray, spacing_xyz) -> bool:  # noqa: ARG002 - engines may ignore the image
        """Whether this engine can segment ``image``; the model-free engine fits every image."""
        return True

    @abstractmethod
    def segment(self, image: np.ndarray, spacing_xyz, prompts: Prompts) -> np.ndarray:
        """Mask of the structure the prompts point at.

        Args:
            image: voxel values ``(z, y, x)`` (any real dtype, HU for CT).
            spacing_xyz: voxel size ``(x, y, z)`` in mm, as ITK reports it.
            prompts: clicks and box in ``(z, y, x)`` voxel indices, checked against ``image.shape``.

        Returns:
            uint8 array of ``image.shape``: 1 inside the structure, 0 elsewhere.
        """

    def segment_volume(self, volume, prompts: Prompts) -> np.ndarray:
        """:meth:`segment` of a :class:`~..volume.Volume`; engines that use the full geometry
        (origin, direction: a bundle that reorients) override this."""
        return self.segment(volume.array, volume.spacing, prompts)
