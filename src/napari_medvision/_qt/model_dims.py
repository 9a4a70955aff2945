"""2D or 3D: which models suit an image layer (the Run-model dock picks a 2D model for a radiograph)."""

from __future__ import annotations

from ..core.errors import MedvisionError


def layer_dims(layer) -> int:
    """2 for a picture or radiograph (one plane: ``(y, x)`` or ``(1, y, x)``, RGB or not), else 3."""
    shape = layer.data.shape[:-1] if getattr(layer, "rgb", False) else layer.data.shape
    return 2 if len(shape) == 2 or shape[0] == 1 else 3


def model_dims(model) -> int:
    """The model's spatial dimensions (3 where its config does not say)."""
    try:
        return int(getattr(model, "spatial_dims", 3))
    except (MedvisionError, TypeError, ValueError):
        return 3


def model_for(models: list, layer, current: int) -> int:
    """The index of the model to choose for ``layer``: ``current`` when it suits the layer's
    dimensionality or no model does, else the first model that does."""
    dims = layer_dims(layer)
    if 0 <= current < len(models) and model_dims(models[current]) == dims:
        return current
    return next((i for i, model in enumerate(models) if model_dims(model) == dims), current)
