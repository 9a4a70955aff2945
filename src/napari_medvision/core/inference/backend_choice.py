"""``--backend auto``: the exported CPU engine where it is installed and measured faster here, else torch.

The first run of a network on a window shape measures, on this machine, one batch of windows in
torch (channels-last, our CPU default) and in each installed engine (OpenVINO, then ONNX Runtime),
after checking that the engine gives torch's output; an engine is chosen only when it is at least
:data:`MIN_GAIN` times faster. The verdict is kept in ``~/.cache/napari-medvision/backends.json``,
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

import torch

from .._atomic import write_json_atomic
from ..errors import ModelError
from .accelerate import CACHE_DIR, accelerated, channels_last

log = logging.getLogger(__name__)
VERDICTS = CACHE_DIR.parent / "backends.json"
#: How much faster than torch an engine must be to be chosen (noise on a busy machine stays below).
MIN_GAIN = 1.25
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
            write_json_atomic(VERDICTS, verdicts)
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


def _read() -> dict:
    try:
        data = json.loads(VERDICTS.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
