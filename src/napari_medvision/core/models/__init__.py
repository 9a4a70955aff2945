"""Model runtime: MONAI bundles, the registry, trust and device choice."""

from . import trust_store
from .bundle import Bundle, LoadedModel, load_bundle, load_weights
from .device import choose_device
from .registry import find_bundle, list_bundles, model_folders

__all__ = ["Bundle", "LoadedModel", "choose_device", "find_bundle", "list_bundles", "load_bundle",
           "load_weights", "model_folders", "trust_store"]
