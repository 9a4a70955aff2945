"""One entry point for every task and model kind."""

from __future__ import annotations

from ..volume import Volume
from .classification import classify
from .detection import detect
from .segmentation import segment

_ENGINES = {"segmentation": segment, "classification": classify, "detection": detect}
_OPTIONS = {
    "segmentation": {"device", "overlap", "sw_batch_size", "tta", "keep_probabilities", "uncertainty",
                     "min_component_mm3", "amp", "backend", "exact_postprocessing"},
    "classification": {"device", "explain", "amp"},
    "detection": {"device", "score_threshold", "nms_iou", "amp"},
    "nnunet": {"device", "folds", "tta", "checkpoint", "keep_probabilities", "min_component_mm3"},
}


def run_model(model, volume: Volume | list[Volume], **options):
    """The engine generator for ``model`` (a bundle: by its task; an nnU-Net model: nnunetv2's predictor).

    ``volume`` is one Volume, or one per input channel for a model with several (nnU-Net:
    in ``channel_names`` order). Options another task or kind does not know are dropped.

    Raises:
        ModelError: several volumes for a model that takes one.
    """
    kind = getattr(model, "kind", "bundle")
    if kind == "bundle" and model.task not in _ENGINES:
        from ..errors import ModelError

        raise ModelError(f"'{model.name}' is an {model.task} model: it segments from clicks, not a whole image; "
                         f"use `medvision interact --model {model.name}` or the Annotate dock")
    if kind == "nnunet":
        from .nnunet_engine import segment_nnunet

        wanted = {k: v for k, v in options.items() if k in _OPTIONS["nnunet"] and v is not None}
        return segment_nnunet(model, volume, **wanted)
    if isinstance(volume, (list, tuple)):
        if len(volume) != 1:
            from ..errors import ModelError

            raise ModelError(f"'{model.name}' takes one image (its channels come from that image); got {len(volume)}")
        volume = volume[0]
    wanted = {k: v for k, v in options.items() if k in _OPTIONS[model.task] and v is not None}
    return _ENGINES[model.task](model, volume, **wanted)


def accepted_options(model) -> frozenset[str]:
    """The option names :func:`run_model` hands to ``model``'s engine; it drops any other.

    A dock shows only these (no Grad-CAM for a segmenter, no box threshold for a classifier; none for
    a model on a MONAI Label server, whose app decides them).
    """
    kind = getattr(model, "kind", "bundle")
    if kind == "monailabel":
        return frozenset()
    return frozenset(_OPTIONS.get("nnunet" if kind == "nnunet" else model.task, ()))
