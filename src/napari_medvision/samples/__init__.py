"""Recipes that train the shipped sample models on phantoms (``medvision train``); not part of core.

Each recipe is a generator that yields progress (strings or training steps) and returns the
metrics it also writes into the bundle's model card. Importing this package is cheap: the
recipes (torch, MONAI) load when one runs.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

SEGMENTATION_SAMPLES = ("ct_organs_unet", "ct_organs_unetr")
SAMPLES = (*SEGMENTATION_SAMPLES, "lesion_classifier", "nodule_detector", "interactive_unet", "radiograph_classifier")
#: Recipes whose model is not shipped yet (trainable with ``medvision train``; see its module docstring).
UNSHIPPED: tuple[str, ...] = ()


def train_sample(name: str, output: str | Path, *, real_data: Path | None = None, **options):
    """The training generator of sample ``name``, writing its bundle to ``output``.

    ``options`` go to the recipe (``seed``, ``device``, ``cases``, ``epochs``, ``max_minutes``);
    ``real_data`` (a folder of real scans reported on in the card) applies to segmentation and, as
    training data, to ``interactive_unet``.

    Raises:
        ValueError: not one of :data:`SAMPLES`.
    """
    if name in SEGMENTATION_SAMPLES:
        from .segmentation import train_segmentation_sample

        return train_segmentation_sample(name, output, real_data=real_data, **options)
    if name not in SAMPLES + UNSHIPPED:
        raise ValueError(f"unknown sample model {name!r}; choose one of {', '.join(SAMPLES)}")
    if name == "interactive_unet":
        from .interactive import train_interactive_sample

        return train_interactive_sample(output, real_data=real_data, **options)
    if real_data is not None:
        log.warning("--real-data is reported on for segmentation samples only; %s ignores it", name)
    if name == "lesion_classifier":
        from .classifier import train_classifier

        return train_classifier(output, **options)
    if name == "radiograph_classifier":
        from .radiograph import train_radiograph_classifier

        return train_radiograph_classifier(output, **options)
    from .detector import train_detector

    return train_detector(output, **options)
