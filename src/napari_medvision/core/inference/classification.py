"""Classification (2D or 3D): class probabilities, the prediction, and a Grad-CAM heatmap
resampled onto the image."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Generator

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Invertd

from ..errors import ModelError
from ..models import Bundle, choose_device
from ..models.cache import loaded_model
from ..volume import Volume
from .channels import prepare_input
from .convert import to_zyx
from .progress import Progress
from .windows import infer

log = logging.getLogger(__name__)


@dataclass
class ClassificationResult:
    """Probabilities per class name, the predicted name, and where the model looked."""

    probabilities: dict[str, float]
    prediction: str
    heatmap: Volume | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def classify(bundle: Bundle, volume: Volume, *, device: str = "auto", explain: bool = True,
             amp: bool = True) -> Generator[Progress, None, ClassificationResult]:
    """Classify ``volume``; yields progress, returns a :class:`ClassificationResult`.

    The heatmap is MONAI's Grad-CAM on the layer named by the bundle's
    ``medvision.cam_layer`` (default: the network's last convolution), scaled to
    0..1 and brought back to the source grid through the inverse preprocessing.
    """
    start = time.perf_counter()
    if bundle.task != "classification":
        raise ModelError(f"'{bundle.name}' is a {bundle.task} model, not a classifier")
    torch_device = choose_device(device)
    yield Progress(0, 3, f"loading {bundle.name}")
    model = loaded_model(bundle, torch_device)
    dims = bundle.spatial_dims
    if dims == 3 and volume.shape[0] == 1:
        raise ModelError(f"'{bundle.name}' is a 3D model and the image is 2D (one slice)")
    if dims == 2 and volume.shape[0] > 1:
        raise ModelError(f"'{bundle.name}' is a 2D model and the image is 3D ({volume.shape[0]} slices); "
                         "classify one slice (a 2D image) instead")
    yield Progress(1, 3, "preprocessing")
    notes: list[str] = []
    prepared = prepare_input(model, bundle, volume, 0 if dims == 2 else None, notes)["image"]
    batch = prepared.as_tensor()[None].float()
    on_cpu = None if model.device.type == "cpu" else (lambda: loaded_model(bundle, torch.device("cpu")).network)
    logits = yield from infer(model.inferer, batch, model.network, model.device, amp=amp, label="classifying",
                              cpu_network=on_cpu)
    logits = logits.reshape(1, -1).cpu().float()
    names = _class_names(bundle, logits.shape[1])
    if logits.shape[1] == 1:
        p = float(torch.sigmoid(logits)[0, 0])
        probabilities = {names[0]: 1 - p, names[1]: p}
        index = int(p >= 0.5)
    else:
        probs = torch.softmax(logits, dim=1)[0]
        probabilities = {names[i]: float(probs[i]) for i in range(len(names))}
        index = int(torch.argmax(probs))
    result = ClassificationResult(probabilities, list(probabilities)[index], notes=notes)
    if explain:
        yield Progress(2, 3, "Grad-CAM")
        result.heatmap = _heatmap(bundle, model, prepared, batch, index if logits.shape[1] > 1 else 0,
                                  volume, dims, result.notes)
    result.seconds = time.perf_counter() - start
    yield Progress(3, 3, "done")
    return result


def _class_names(bundle: Bundle, outputs: int) -> list[str]:
    names = [bundle.labels.get(i) for i in range(max(outputs, 2))]
    if outputs == 1 and bundle.labels.get(0) and not bundle.labels.get(1):
        return [f"no {bundle.labels[0]}", bundle.labels[0]]
    return [name or f"class {i}" for i, name in enumerate(names)]


def _heatmap(bundle, model, prepared, batch, class_index, volume, dims, notes) -> Volume | None:
    from monai.visualize import GradCAM

    layer = bundle.extras.get("cam_layer") or _last_conv(model.network)
    if layer is None:
        notes.append("no convolution layer found for Grad-CAM; no heatmap")
        return None
    try:
        # Grad-CAM hooks its layers for good, turns in-place activations off and leaves gradients
        # in the parameters: it gets a copy, the cached network is shared by every run.
        network = copy.deepcopy(model.network)
        with torch.enable_grad():
            # MONAI's default post-processing maps (min, max) to (1, 0) — flipped, for its colour maps;
            # ours keeps the magnitudes (high = where the class evidence is) and scales below.
            cam = GradCAM(nn_module=network, target_layers=layer, postprocessing=_keep)(
                batch.to(model.device).requires_grad_(True), class_idx=class_index)
    except Exception as exc:  # TorchScript modules and exotic networks have no hooks
        notes.append(f"Grad-CAM unavailable for this network ({type(exc).__name__}); no heatmap")
        log.info("Grad-CAM failed", exc_info=exc)
        return None
    cam = cam[0].detach().cpu().float()
    cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-8)
    inverted = Invertd(keys="cam", transform=model.preprocessing, orig_keys="image", nearest_interp=False)(
        {"image": prepared, "cam": MetaTensor(cam, meta=prepared.meta, applied_operations=prepared.applied_operations)})
    heat = to_zyx(inverted["cam"], dims)[0]
    if dims == 2:
        heat = heat[np.newaxis]
    if heat.shape != volume.shape:
        notes.append(f"heatmap came back as {heat.shape}, not {volume.shape}; not shown")
        return None
    return volume.with_array(heat.astype(np.float32), model=bundle.name)


def _keep(cam):
    return cam


def _last_conv(network: torch.nn.Module) -> str | None:
    name = None
    for module_name, module in network.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)):
            name = module_name
    return name
