"""Engine results -> napari layer data, on the source study's exact grid."""

from __future__ import annotations

import numpy as np

from ..core.inference import ClassificationResult, DetectionResult, SegmentationResult
from ..core.inference.detection import box_to_index_zyx
from ..core.volume import Volume
from .layers import image_layer_data, labels_layer_data

MODEL_OUTPUT_KEY = "medvision_model_output"


def segmentation_layers(result: SegmentationResult, model_name: str,
                        colors: dict[int, str] | None = None) -> list[tuple]:
    """Labels named after the model, then probability and uncertainty images when present."""
    kwargs = {"opacity": 0.5}
    if colors:
        from napari.utils.colormaps import DirectLabelColormap

        kwargs["colormap"] = DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", **colors})
    data, layer_kwargs, kind = labels_layer_data(result.labels, f"{model_name} labels", result.label_names, **kwargs)
    layer_kwargs["metadata"]["volumes_ml"] = result.volumes_ml
    # The prediction as the model gave it: brush edits are measured against it when the
    # corrected layer is added to a case store (correction-aware fine-tuning).
    layer_kwargs["metadata"][MODEL_OUTPUT_KEY] = result.labels.array.copy()
    layer_kwargs["metadata"]["model"] = model_name
    layers = [(data, layer_kwargs, kind)]
    if result.probabilities is not None:
        for value, name in result.label_names.items():
            if value < result.probabilities.shape[0]:
                layers.append(_overlay(result.labels.with_array(result.probabilities[value]),
                                       f"{model_name} p({name})", "inferno", (0.0, 1.0), visible=False))
    if result.uncertainty is not None:
        layers.append(_overlay(result.uncertainty, f"{model_name} uncertainty", "magma", (0.0, 1.0),
                               case_uncertainty=result.case_uncertainty))
    return layers


def heatmap_layer(result: ClassificationResult, model_name: str) -> tuple | None:
    if result.heatmap is None:
        return None
    return _overlay(result.heatmap, f"{model_name} Grad-CAM ({result.prediction})", "turbo", (0.0, 1.0))


def boxes_layer(result: DetectionResult, volume: Volume, model_name: str) -> tuple:
    """A Shapes layer on the study's grid: one rectangle per box on every slice the box spans.

    Stacked rectangles line up with the image in 2D and outline the box in 3D.
    """
    shapes, labels, scores = [], [], []
    for box in result.boxes:
        low, high = box_to_index_zyx(volume, box.box_world)
        z_first = max(int(np.ceil(low[0])), 0)
        z_last = min(int(np.floor(high[0])), volume.shape[0] - 1)
        for z in range(z_first, max(z_last, z_first) + 1):
            shapes.append(np.array([[z, low[1], low[2]], [z, low[1], high[2]],
                                    [z, high[1], high[2]], [z, high[1], low[2]]]))
            labels.append(box.label)
            scores.append(round(box.score, 3))
    kwargs = {
        "name": f"{model_name} boxes",
        "affine": volume.napari_affine(),
        "shape_type": "rectangle",
        "edge_color": "yellow",
        "face_color": "transparent",
        "edge_width": 1.0,
        "features": {"label": labels, "score": scores},
        "text": {"string": "{label} {score:.2f}", "color": "yellow", "size": 9, "anchor": "upper_left"},
        "metadata": {"boxes": [b.to_dict() for b in result.boxes]},
    }
    return (shapes, kwargs, "shapes")


def _overlay(volume: Volume, name: str, colormap: str, limits, visible: bool = True, **metadata) -> tuple:
    data, kwargs, kind = image_layer_data(volume, name, colormap=colormap, contrast_limits=list(limits),
                                          blending="additive", opacity=0.6, visible=visible)
    kwargs["metadata"].update(metadata)
    return data, kwargs, kind
