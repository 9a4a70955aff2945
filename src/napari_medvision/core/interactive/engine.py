"""The engines by name, and the choice of engine for an image (see :mod:`.base` for the interface)."""

from __future__ import annotations

import numpy as np

from ..errors import MedvisionError
from .base import InteractiveEngine
from .prompts import Prompts
from .random_walk import RandomWalkEngine


def available_engines() -> dict[str, InteractiveEngine]:
    """Every engine, by name, best first (the first that fits an image is its default)."""
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
