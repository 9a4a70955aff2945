"""An ONNX network (a bundle's ``models/model.onnx``) called like a torch module, run by ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError


class OnnxNetwork(torch.nn.Module):
    """``forward(x)``: ``x`` ``(B, C, *spatial)`` float -> the graph's first output, as a tensor on ``x``'s device.

    Raises:
        ModelError: onnxruntime missing (the ``fast`` extra), or the file is not a loadable ONNX graph.
    """

    def __init__(self, path: str | Path):
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError("ONNX models need onnxruntime: pip install 'napari-medvision[fast]'") from None
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"'{Path(path).name}' is not a loadable ONNX graph ({str(exc).splitlines()[0][:160]})") \
                from None
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().cpu().float().numpy())
        out = self.session.run(None, {self.input_name: array})[0]
        return torch.from_numpy(np.asarray(out)).to(x.device)
