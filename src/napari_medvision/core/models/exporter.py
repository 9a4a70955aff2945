"""``medvision export``: a segmentation bundle's network as ONNX or TorchScript, checked against torch.

The exported graph is run on one sliding window of random input and compared with the torch
network on the same window; the largest absolute difference is reported. The ONNX export is
the one the accelerated CPU path uses (:mod:`..inference.accelerate`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError

FORMATS = ("onnx", "torchscript")


def export_model(bundle, fmt: str, output: str | Path, seed: int = 0) -> dict:
    """Write ``bundle``'s network to ``output`` in ``fmt``; returns ``{"format", "output", "window", "max_abs_diff"}``.

    ``window`` is the input shape checked ``(1, C, *roi)``. The file appears whole or not at all.

    Raises:
        ModelError: not a segmentation bundle, no fixed window size, unknown format, export failure.
    """
    if fmt not in FORMATS:
        raise ModelError(f"unknown export format '{fmt}'; use one of {', '.join(FORMATS)}")
    if getattr(bundle, "kind", "bundle") == "nnunet" or bundle.task != "segmentation":
        raise ModelError(f"'{bundle.name}' is a {getattr(bundle, 'kind', 'bundle')} {bundle.task} model; "
                         "export works on segmentation bundles")
    loaded = bundle.build(torch.device("cpu"))
    network = loaded.network.eval()
    shape = (1, bundle.in_channels, *_window(bundle, loaded.inferer))
    example = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        reference = _first(network(example)).float()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(handle)
    try:
        if fmt == "onnx":
            got = _export_onnx(bundle, network, shape, example, Path(temp))
        else:
            got = _export_torchscript(network, example, Path(temp))
        os.replace(temp, output)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    difference = float((got - reference).abs().max())
    return {"format": fmt, "output": str(output), "window": list(shape), "max_abs_diff": difference}


def _window(bundle, inferer) -> tuple[int, ...]:
    roi = getattr(inferer, "roi_size", None)
    if roi and all(isinstance(r, int) and r > 0 for r in roi):
        return tuple(roi)
    shape = bundle._input_format().get("spatial_shape")
    if isinstance(shape, list) and shape and all(isinstance(s, int) and s > 0 for s in shape):
        return tuple(shape)
    raise ModelError(f"'{bundle.name}' has no fixed window size (inferer roi_size or the input's spatial_shape)")


def _export_onnx(bundle, network, shape, example, path: Path) -> torch.Tensor:
    from ..inference.accelerate import _export, _onnxruntime, export_key

    if not isinstance(network, torch.nn.Module) or isinstance(network, torch.jit.ScriptModule):
        raise ModelError(f"'{bundle.name}' holds no torch network to export (already an exported graph)")
    weights = sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in (bundle.path / "models").glob("model.*"))
    cached = _export(network, shape, export_key("export", str(bundle.path), weights))
    shutil.copyfile(cached, path)
    return torch.from_numpy(np.asarray(_onnxruntime(path)(example.numpy()))).float()


def _export_torchscript(network, example, path: Path) -> torch.Tensor:
    try:
        with torch.no_grad():
            scripted = network if isinstance(network, torch.jit.ScriptModule) else torch.jit.trace(network, example)
        torch.jit.save(scripted, str(path))
        reloaded = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            return _first(reloaded(example)).float()
    except (RuntimeError, TypeError) as exc:
        raise ModelError(f"the network cannot be traced to TorchScript ({str(exc).splitlines()[0][:200]})") from None


def _first(output):
    return output[0] if isinstance(output, (list, tuple)) else output
