"""Model runtime: MONAI bundles, nnU-Net v2 folders, the registry, trust and device choice."""

from . import trust_store
from .bundle import Bundle, LoadedModel, load_bundle, load_weights
from .device import choose_device
from .nnunet import NnUNetModel, load_nnunet
from .registry import find_bundle, find_model, list_bundles, list_models, load_model, model_folders

__all__ = ["Bundle", "LoadedModel", "NnUNetModel", "choose_device", "find_bundle", "find_model", "list_bundles",
           "list_models", "load_bundle", "load_model", "load_nnunet", "load_weights", "model_folders", "trust_store"]
