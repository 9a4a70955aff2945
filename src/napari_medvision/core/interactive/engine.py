"""One interface for every prompted-segmentation engine, and the choice of engine for an image.

An engine is arrays in, arrays out: the image ``(z, y, x)``, its spacing and the prompts give a
0/1 mask on the same grid. Engines keep no state between calls, so a call can run in any thread or
process (a worker process sends them the arrays) and a new click simply starts a new call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..errors import MedvisionError
from .prompts import Prompts


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


def available_engines() -> dict[str, InteractiveEngine]:
    """Every engine, by name, best first (the first that fits an image is its default)."""
    from .random_walk import RandomWalkEngine

    engines = [RandomWalkEngine()]
    return {engine.name: engine for engine in engines}


def choose_engine(image: np.ndarray, spacing_xyz, name: str | None = None) -> InteractiveEngine:
    """The engine called ``name``, or the best one that fits the image when ``name`` is None.

    Raises:
        MedvisionError: no engine of that name, or it does not fit the image.
    """
    engines = available_engines()
    if name is None:
        return next(engine for engine in engines.values() if engine.fits(image, spacing_xyz))
    if name not in engines:
        raise MedvisionError(f"no interactive engine called '{name}'; choose one of: {', '.join(engines)}")
    engine = engines[name]
    if not engine.fits(image, spacing_xyz):
        raise MedvisionError(f"the interactive engine '{name}' does not fit this image "
                             f"(shape {image.shape}); leave the engine out to use one that does")
    return engine


def segment_prompts(image: np.ndarray, spacing_xyz, prompts: Prompts, engine: str | None = None) -> np.ndarray:
    """Check the prompts, run the chosen engine, return a uint8 0/1 mask of ``image.shape``."""
    prompts.check(image.shape)
    mask = choose_engine(image, spacing_xyz, engine).segment(image, spacing_xyz, prompts)
    return np.ascontiguousarray(mask, dtype=np.uint8)
