"""Faster CPU paths.

* torch itself: convolutional networks run in channels-last memory order
  (:func:`channels_last`), the layout oneDNN's CPU convolutions work in; same values.
* the network exported once to ONNX, run by OpenVINO or ONNX Runtime.

The torch network stays the reference; an exported network is only used for
fixed-size sliding windows, and any failure to export or compile falls back to
torch with a note. Exports are cached under ``onnx`` in the user cache folder (``$MEDVISION_CACHE`` or
``~/.napari-medvision/cache``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
import weakref
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError
from ..models.registry import cache_folder

log = logging.getLogger(__name__)
BACKENDS = ("torch", "openvino", "onnxruntime")
#: What ``--backend`` accepts: a backend, or ``auto`` (see :mod:`.backend_choice`).
CHOICES = ("auto", *BACKENDS)
CACHE_DIR = cache_folder() / "onnx"
_COMPILED: dict[tuple, "ExportedNetwork"] = {}
_CONVERTED: "weakref.WeakKeyDictionary[torch.nn.Module, torch.memory_format | None]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


class ExportedNetwork:
    """Called like the torch network on a CPU batch ``(B, C, *roi)``; returns a torch tensor."""

    def __init__(self, run, backend: str):
        self._run = run
        self.backend = backend

    def __call__(self, batch: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().cpu().float().numpy())
        return torch.from_numpy(np.asarray(self._run(array)))

    def to(self, *args, **kwargs):
        return self


class ChannelsLast:
    """Calls ``network`` with each batch in channels-last memory order (values unchanged)."""

    def __init__(self, network: torch.nn.Module, memory_format: torch.memory_format):
        self.network = network
        self.memory_format = memory_format

    def __call__(self, batch: torch.Tensor, *args, **kwargs):
        return self.network(in_layout(batch, self.memory_format), *args, **kwargs)

    def to(self, *args, **kwargs):
        self.network = self.network.to(*args, **kwargs)
        return self


def to_channels_last(network: torch.nn.Module) -> torch.memory_format | None:
    """Convert a convolutional network's parameters to channels-last order, in place.

    Returns the memory format its inputs should be given in, or None when nothing was done
    (no 2D/3D convolutions, or parameters that cannot take the layout). Every value stays
    as it was, so any other use of the network is unaffected.
    """
    if not isinstance(network, torch.nn.Module):
        return None
    modules = list(network.modules())
    if any(isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)) for m in modules):
        memory_format = torch.channels_last_3d
    elif any(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) for m in modules):
        memory_format = torch.channels_last
    else:
        return None
    try:
        network.to(memory_format=memory_format)
    except (RuntimeError, TypeError) as exc:  # parameters of another rank
        log.info("channels-last not applied: %s", exc)
        return None
    return memory_format


def in_layout(batch: torch.Tensor, memory_format: torch.memory_format | None) -> torch.Tensor:
    """``batch`` in ``memory_format`` when it has the rank for it (else as it is)."""
    rank = {torch.channels_last_3d: 5, torch.channels_last: 4}.get(memory_format)
    return batch.contiguous(memory_format=memory_format) if rank == batch.ndim else batch


def channels_last(network: torch.nn.Module):
    """``network`` for CPU batches in channels-last order (a :class:`ChannelsLast`), or ``network`` itself.

    On this machine class (2 cores, AVX2), with batches of 4 windows of 96³, a 3D U-Net runs about
    1.2x faster and a UNETR 1.5x, outputs equal to 1e-5; one window at a time: no gain, no loss
    (``benchmarks/inference.py``). Training steps gain about 1.2x too (see the trainer).

    A cached network is converted once, on its first CPU run, and never again: the conversion
    changes its memory order only, so every run (the first one included) computes the same values.
    """
    with _LOCK:
        try:
            memory_format = _CONVERTED[network]
        except (KeyError, TypeError):  # TypeError: not weak-referable (TorchScript is, plain callables may not be)
            memory_format = to_channels_last(network)
            with contextlib.suppress(TypeError):
                _CONVERTED[network] = memory_format
    return network if memory_format is None else ChannelsLast(network, memory_format)


def accelerated(network: torch.nn.Module, example_shape: tuple[int, ...], backend: str, key: str) -> ExportedNetwork:
    """The network for ``backend`` on inputs shaped like ``example_shape`` (batch axis dynamic).

    Raises:
        ModelError: the backend is not installed or the network cannot be exported.
    """
    if backend not in BACKENDS[1:]:
        raise ModelError(f"unknown backend '{backend}'; use one of {', '.join(BACKENDS)}")
    cache_key = (backend, key, tuple(example_shape))
    with _LOCK:
        if cache_key in _COMPILED:
            return _COMPILED[cache_key]
    onnx_path = _export(network, example_shape, key)
    run = _openvino(onnx_path) if backend == "openvino" else _onnxruntime(onnx_path)
    exported = ExportedNetwork(run, backend)
    with _LOCK:
        _COMPILED[cache_key] = exported
    return exported


def export_key(*parts) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _export(network: torch.nn.Module, example_shape, key: str) -> Path:
    path = CACHE_DIR / f"{key}-{'x'.join(map(str, example_shape[1:]))}.onnx"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(handle)
    try:
        with torch.no_grad():
            torch.onnx.export(network.cpu().eval(), torch.zeros(example_shape), temp, input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                              opset_version=17, dynamo=False)
        os.replace(temp, path)
    except Exception as exc:  # exporters raise many kinds
        raise ModelError(f"the network cannot be exported to ONNX ({type(exc).__name__}: {exc})") from None
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return path


def _openvino(path: Path):
    try:
        import openvino as ov
    except ImportError:
        raise ModelError("the openvino backend needs the 'openvino' package (pip install openvino)") from None
    core = ov.Core()
    # OpenVINO's own model cache: a later process loads the compiled network instead of compiling it
    # again (compiled from the file's path, which is what that cache is keyed by, with the file's content).
    with contextlib.suppress(Exception):  # a read-only cache folder: compile every time then
        (CACHE_DIR / "openvino").mkdir(parents=True, exist_ok=True)
        core.set_property({"CACHE_DIR": str(CACHE_DIR / "openvino")})
    # f32 on purpose: bf16 on CPUs without native support is slower and changes label maps.
    # No pinning of OpenVINO's threads to cores: the viewer draws (software OpenGL without a GPU) and
    # other programs run beside a run; pinned threads cannot move out of their way. Measured in the
    # viewer's compute worker on a busy 2-core machine (5 warm runs each, interleaved): median 5.3 s
    # and longest GUI stall 28 ms without pinning, 6.4 s and 36 ms with it.
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "ENABLE_CPU_PINNING": False})
    return lambda array: compiled(array)[0]


def _onnxruntime(path: Path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError("the onnxruntime backend needs the 'onnxruntime' package") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda array: session.run(None, {"x": array})[0]
