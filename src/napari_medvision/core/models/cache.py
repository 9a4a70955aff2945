"""Built models kept between runs, so re-running on the next study skips instantiation.

A cached model is shared by every later run and thread, so no run writes to it: per-run
settings (overlap, windows per batch, blend mode, devices, OOM fallbacks, box thresholds) go
into objects of that run's own (``inference.windows.for_this_run``, a per-run detector copy).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict

import torch

from .bundle import Bundle, LoadedModel

_CACHE: OrderedDict[tuple, LoadedModel] = OrderedDict()
_LOCK = threading.Lock()
_SIZE = 2


def loaded_model(bundle: Bundle, device: torch.device) -> LoadedModel:
    """``bundle.build(device)``, reused while the bundle's files are unchanged."""
    weights = [p for p in (bundle.path / "models").glob("model.*")] if (bundle.path / "models").is_dir() else []
    stamp = tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in weights))
    config = json.dumps([bundle.config, bundle.metadata], sort_keys=True, default=str)
    key = (str(bundle.path), stamp, str(device), bundle.trusted, hash(config))
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    model = bundle.build(device)
    with _LOCK:
        _CACHE[key] = model
        while len(_CACHE) > _SIZE:
            _CACHE.popitem(last=False)
    return model


def clear() -> None:
    with _LOCK:
        _CACHE.clear()
