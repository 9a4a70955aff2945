"""``--backend auto``: the exported CPU engine where it is installed and measured faster here, else torch.

The first run of a network on a window shape measures, on this machine, one batch of windows in
torch (channels-last, our CPU default) and in each installed engine (OpenVINO, then ONNX Runtime),
after checking that the engine gives torch's output; an engine is chosen only when it is at least
:data:`MIN_GAIN` times faster (a batch torch runs in under :data:`MIN_TORCH_S` is left to torch:
no export could pay for itself). The verdict is kept in ``backends.json`` in the user cache folder (``$MEDVISION_CACHE`` or ``~/.napari-medvision/cache``),
keyed by the network's content (bundle, weights' size and time), the batch shape and the machine
(CPU, core count, library versions), so later runs, and later processes, decide without measuring.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import platform
import threading
import time
from pathlib import Path

import torch

from .._atomic import write_json_atomic
from ..errors import ModelError
from ..models.registry import cache_folder
from .accelerate import accelerated, channels_last

log = logging.getLogger(__name__)
#: Where verdicts are kept; None: ``backends.json`` under ``MEDVISION_CACHE`` (read at each use).
VERDICTS: Path | None = None
#: How much faster than torch an engine must be to be chosen (noise on a busy machine stays below).
MIN_GAIN = 1.25
#: A batch torch runs faster than this (seconds) is not worth an export: torch, without measuring more.
MIN_TORCH_S = 0.05
#: Largest difference from torch's output allowed, relative to the output's range.
_TOLERANCE = 1e-3
_ENGINES = (("openvino", "openvino"), ("onnxruntime", "onnxruntime"))
_LOCK = threading.Lock()


def installed_engines() -> list[str]:
    """The exported-network backends whose package is installed (not imported)."""
    return [name for name, module in _ENGINES if importlib.util.find_spec(module) is not None]


def choose(network, batch_shape: tuple[int, ...], key: str) -> str:
    """``"torch"``, ``"openvino"`` or ``"onnxruntime"`` for ``network`` on batches of ``batch_shape``.

    Args:
        network: the torch network on the CPU (the reference).
        batch_shape: ``(windows per batch, channels, *roi)``.
        key: the network's content key (:func:`.accelerate.export_key` of bundle and weights).
    """
    engines = installed_engines()
    if not engines:
        return "torch"
    verdict_key = _verdict_key(key, batch_shape, engines)
    with _LOCK:
        known = _read().get(verdict_key)
    if known in ("torch", *engines):
        return known
    verdict = _measure(network, batch_shape, key, engines)
    with _LOCK:
        verdicts = _read()
        verdicts[verdict_key] = verdict
        try:
            write_json_atomic(_verdicts_path(), verdicts)
        except OSError as exc:  # a read-only home: decide again next time
            log.info("backend verdict not kept: %s", exc)
    return verdict


def _measure(network, batch_shape, key, engines) -> str:
    """Time one batch in torch and each engine (best of two, after a first call); the fastest by
    :data:`MIN_GAIN`, among engines whose output equals torch's."""
    generator = torch.Generator().manual_seed(0)
    batch = torch.rand(batch_shape, generator=generator)
    reference = channels_last(network)
    expected, torch_s = _timed(reference, batch)
    if torch_s < MIN_TORCH_S:
        log.info("backend check: torch takes %.3f s per batch %s; not worth an export", torch_s, batch_shape)
        return "torch"
    scale = float(expected.abs().max()) or 1.0
    best, best_s = "torch", torch_s
    for name in engines:
        try:
            engine = accelerated(network, (1, *batch_shape[1:]), name, key)
            output, seconds = _timed(engine, batch)
        except ModelError as exc:
            log.info("backend %s not usable: %s", name, exc)
            continue
        error = float((output.float() - expected).abs().max()) / scale
        log.info("backend check: torch %.3f s, %s %.3f s per batch %s, difference %.1e", torch_s, name, seconds,
                 batch_shape, error)
        if error <= _TOLERANCE and seconds * MIN_GAIN <= best_s:
            best, best_s = name, seconds * MIN_GAIN
    return best


def _timed(network, batch) -> tuple[torch.Tensor, float]:
    with torch.no_grad():
        output = network(batch)
        times = []
        for _ in range(2):
            start = time.perf_counter()
            network(batch)
            times.append(time.perf_counter() - start)
    return output, min(times)


def _verdict_key(key: str, batch_shape, engines) -> str:
    versions = [torch.__version__]
    for name in engines:
        try:
            from importlib.metadata import version

            versions.append(f"{name}={version(name)}")
        except Exception:  # noqa: BLE001 - metadata of an odd install: the name alone then
            versions.append(name)
    machine = (platform.machine(), platform.processor(), os.cpu_count(), _cpu_model())
    raw = json.dumps([key, list(batch_shape), versions, machine])
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        return ""


def _verdicts_path() -> Path:
    if VERDICTS is not None:
        return VERDICTS
    return cache_folder() / "backends.json"


def _read() -> dict:
    try:
        data = json.loads(_verdicts_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
