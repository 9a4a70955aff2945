"""The engines by name, and the choice of engine for an image (see :mod:`.base` for the interface)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import MedvisionError
from .base import InteractiveEngine
from .click_unet import ClickUNetEngine
from .prompts import Prompts
from .random_walk import RandomWalkEngine


def available_engines(device: str = "auto") -> dict[str, InteractiveEngine]:
    """Every engine, by name, best first (the first that fits an image is its default).

    The model-free random walker fits every image and comes first: measured with the simulated user
    (``benchmarks/interactive.py``), the shipped click-conditioned U-Net (3D images only) is ahead
    of it on the phantom organs and lesions but needs more clicks on the real scans (NoC@85 13.6
    against 10.0; neither reaches the goal of 4), and real scans are what users bring. The U-Net is
    chosen by name (``--model interactive_unet``, the dock's engine list); moving it first makes it
    the default for 3D images (the walker stays the fallback for 2D images and a missing model).
    """
    engines = [RandomWalkEngine(), _shared(ClickUNetEngine, device)]
    return {engine.name: engine for engine in engines}


def choose_engine(image: np.ndarray, spacing_xyz, name: str | None = None, *, trusted: bool = False,
                  device: str = "auto", label: str | None = None) -> InteractiveEngine:
    """The engine called ``name``, or the best one that fits the image when ``name`` is None.

    A ``name`` that is no built-in engine may name an interactive Model Zoo bundle (registry name or
    folder: DeepEdit- or VISTA3D-style, :mod:`.zoo`; ``trusted`` and ``label`` are for those; ``device``
    for those and the click-conditioned U-Net)
    or a version of the shipped click-conditioned model (a bundle whose task is ``interactive``, such
    as a fine-tuned ``STORE/models/interactive_unet/v001`` or ``STORE@current``).

    Raises:
        MedvisionError: no engine or interactive bundle of that name, or it does not fit the image.
    """
    engines = available_engines(device)
    if name is None:
        return next(engine for engine in engines.values() if engine.fits(image, spacing_xyz))
    if name not in engines:
        engine = _zoo_engine(name, engines, trusted, device, label)
    else:
        engine = engines[name]
    if not engine.fits(image, spacing_xyz):
        raise MedvisionError(f"the interactive engine '{name}' does not fit this image "
                             f"(shape {image.shape}); leave the engine out to use one that does")
    return engine


def _zoo_engine(name: str, engines: dict, trusted: bool, device: str, label: str | None) -> InteractiveEngine:
    from ..errors import ModelError
    from .zoo import zoo_engine

    choices = f"choose one of: {', '.join(engines)}, or an interactive bundle (DeepEdit / VISTA3D)"
    try:
        engine = zoo_engine(name, trusted=trusted, device=device, label=label)
    except ModelError:
        if Path(name).expanduser().exists():
            raise  # a folder that is no readable model: its own message says why
        raise MedvisionError(f"no interactive engine or model called '{name}'; {choices}") from None
    if engine is None and getattr(model_of(name, trusted), "task", None) == "interactive":
        return click_unet_at(name, trusted, device)
    if engine is None:
        raise MedvisionError(f"'{name}' is a model but not an interactive one (no click guidance, no point "
                             f"prompts in its config); {choices}")
    return engine


def model_of(name: str, trusted: bool = False):
    """The model ``name`` names (registry name, folder, ``STORE@ref``); nothing is built."""
    from ..models import find_model

    return find_model(name, trusted=trusted)


def click_unet_at(name: str, trusted: bool = False, device: str = "auto") -> InteractiveEngine:
    """The click-conditioned engine on the bundle ``name`` names (a version of the shipped model),
    one per bundle folder and weights file, so its network is built once per process.

    Raises:
        UntrustedCodeError: its config would run code of its own (its ``network_def`` is parsed by MONAI)
            and ``trusted`` is False.
    """
    model = model_of(name, trusted)
    model.check_trust()
    path = Path(model.path).resolve()
    weights = path / "models" / "model.pt"
    key = (str(path), weights.stat().st_mtime_ns if weights.is_file() else None, device)
    if key not in _VERSIONS:
        engine = ClickUNetEngine(path, device=device)
        engine.name = str(name)
        _VERSIONS[key] = engine
    return _VERSIONS[key]


def segment_prompts(image: np.ndarray, spacing_xyz, prompts: Prompts, engine: str | None = None, *,
                    trusted: bool = False, device: str = "auto", label: str | None = None,
                    origin=None, direction=None) -> np.ndarray:
    """Check the prompts, run the chosen engine, return a uint8 0/1 mask of ``image.shape``.

    ``trusted``, ``device``, ``label``: as :func:`choose_engine`. ``origin`` / ``direction`` (LPS, as
    :class:`~..volume.Volume` holds them): the image's geometry, for engines that use it (a zoo bundle
    that reorients); without them the image is taken as axis-aligned.
    """
    prompts.check(image.shape)
    chosen = choose_engine(image, spacing_xyz, engine, trusted=trusted, device=device, label=label)
    if origin is None and direction is None:
        mask = chosen.segment(image, spacing_xyz, prompts)
    else:
        from ..volume import Volume

        volume = Volume(np.asarray(image), spacing=tuple(spacing_xyz), origin=tuple(origin if origin is not None
                        else (0.0, 0.0, 0.0)), direction=np.eye(3) if direction is None else np.asarray(direction))
        mask = np.asarray(chosen.segment_volume(volume, prompts)).reshape(image.shape)
    return np.ascontiguousarray(mask, dtype=np.uint8)


_SHARED: dict[tuple, InteractiveEngine] = {}
_VERSIONS: dict[tuple, InteractiveEngine] = {}


def _shared(kind: type, device: str) -> InteractiveEngine:
    """One instance per engine class and device, so its network is built once per process."""
    if (kind, device) not in _SHARED:
        _SHARED[(kind, device)] = kind(device=device)
    return _SHARED[(kind, device)]
