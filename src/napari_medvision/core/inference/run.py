"""One entry point for every task."""

from __future__ import annotations

from ..models import Bundle
from ..volume import Volume
from .classification import classify
from .detection import detect
from .segmentation import segment

_ENGINES = {"segmentation": segment, "classification": classify, "detection": detect}
_OPTIONS = {
    "segmentation": {"device", "overlap", "sw_batch_size", "tta", "keep_probabilities", "uncertainty",
                     "min_component_mm3", "amp", "backend"},
    "classification": {"device", "explain", "amp"},
    "detection": {"device", "score_threshold", "nms_iou", "amp"},
}


def run_model(bundle: Bundle, volume: Volume, **options):
    """The engine generator for ``bundle.task``; options another task does not know are dropped."""
    wanted = {k: v for k, v in options.items() if k in _OPTIONS[bundle.task] and v is not None}
    return _ENGINES[bundle.task](bundle, volume, **wanted)
