"""Segmentation: the bundle's transforms, a Gaussian-weighted sliding window, optional flip TTA,
probabilities and an uncertainty map, the label map back on the source grid."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Generator

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer
from monai.transforms import AsDiscreted, Compose, Invertd

from ..errors import ModelError
from ..models import Bundle, choose_device
from ..models.cache import loaded_model
from ..volume import Volume
from .cleanup import channel_argmax, remove_small_components
from . import fast_labels
from .channels import prepare_input
from .convert import to_zyx
from .precision import float32_resampling
from .progress import Progress
from .windows import for_this_run, infer

log = logging.getLogger(__name__)
_EPS = 1e-6


@dataclass
class SegmentationResult:
    """A label map on the source grid, with what else was asked for.

    Attributes:
        labels: label map (z, y, x) with the source geometry.
        label_names: value -> name (background excluded).
        probabilities: ``(C, z, y, x)`` float32 softmax on the source grid, or None.
        uncertainty: normalised entropy (0..1) of the mean prediction on the source grid, or None.
        case_uncertainty: mean entropy over the predicted foreground (one number per case).
        volumes_ml: label name -> volume in millilitres.
        seconds: wall time of the run.
        notes: what the run decided along the way (fallbacks, slice-by-slice...).
    """

    labels: Volume
    label_names: dict[int, str]
    probabilities: np.ndarray | None = None
    uncertainty: Volume | None = None
    case_uncertainty: float | None = None
    volumes_ml: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def segment(bundle: Bundle, volume: Volume, *, device: str = "auto", overlap: float | None = None,
            sw_batch_size: int | None = None, tta: bool = False, keep_probabilities: bool = False,
            uncertainty: bool = False, min_component_mm3: float = 0.0, amp: bool = True,
            backend: str = "torch", exact_postprocessing: bool = False) -> Generator[Progress, None, SegmentationResult]:
    """Segment ``volume`` with ``bundle``; a generator yielding progress, returning the result.

    Args:
        overlap / sw_batch_size: override the bundle's sliding-window settings.
        tta: average the prediction over flips of each spatial axis.
        keep_probabilities: return the per-class probabilities on the source grid.
        uncertainty: return an entropy map (uses the flip passes, so implies TTA).
        min_component_mm3: drop connected pieces of a label smaller than this.
        backend: ``"torch"`` (the reference), ``"openvino"`` / ``"onnxruntime"`` for a faster CPU path
            through an ONNX export of the network, or ``"auto"``: an exported one where installed and
            measured faster on this machine (:mod:`.backend_choice`), torch otherwise.
        exact_postprocessing: run the bundle's pre- and postprocessing as written, resampling in the
            bundle's precision (MONAI's default float64; float32 otherwise, :mod:`.precision`) and
            every class's scores; by default a postprocessing of activation, ``Invertd`` and argmax takes the argmax
            on the model's grid and resamples the label map alone (:mod:`.fast_labels`).

    Raises:
        ModelError: the model does not fit the image (channels, dimensions).
    """
    start = time.perf_counter()
    if bundle.task != "segmentation":
        raise ModelError(f"'{bundle.name}' is a {bundle.task} model, not a segmentation model")
    torch_device = choose_device(device)
    yield Progress(0, 1, f"loading {bundle.name}")
    model = loaded_model(bundle, torch_device)
    notes: list[str] = []
    if bundle.spatial_dims == 3 and volume.shape[0] == 1:
        raise ModelError(f"'{bundle.name}' is a 3D model and the image is 2D (one slice)")
    inferer = _inferer(bundle, model.inferer, overlap, sw_batch_size)
    networks = (_network_for(bundle, model, inferer, backend, notes), _on_cpu(bundle, model, inferer, backend, notes))
    passes = _flips(bundle.spatial_dims) if (tta or uncertainty) else [()]

    if bundle.spatial_dims == 2:
        if volume.shape[0] > 1:
            notes.append(f"2D model: segmented slice by slice ({volume.shape[0]} slices)")
        slices = []
        for k in range(volume.shape[0]):
            item = yield from _segment_one(bundle, model, networks, (volume, k), inferer, passes, amp,
                                           f"slice {k + 1}/{volume.shape[0]}", keep_probabilities or uncertainty,
                                           notes if k == 0 else [], exact_postprocessing)
            slices.append(item)
        labels = np.stack([s[0] for s in slices])
        probs = np.stack([s[1] for s in slices], axis=1) if slices[0][1] is not None else None
    else:
        labels, probs = yield from _segment_one(bundle, model, networks, (volume, None), inferer, passes, amp,
                                                "sliding window", keep_probabilities or uncertainty, notes,
                                                exact_postprocessing)

    if labels.shape != volume.shape:
        raise ModelError(f"the model's postprocessing returned shape {labels.shape}, "
                         f"not the image's {volume.shape}; it must invert its resampling (Invertd)")
    if min_component_mm3 > 0:
        labels = remove_small_components(labels, min_component_mm3, volume.spacing)
    label_volume = volume.with_array(_compact(labels), model=bundle.name)
    result = SegmentationResult(label_volume, dict(bundle.labels), notes=notes)
    if probs is not None:
        if keep_probabilities:
            result.probabilities = probs.astype(np.float32)
        if uncertainty:
            entropy = -(probs * np.log(np.clip(probs, _EPS, 1))).sum(axis=0) / np.log(max(probs.shape[0], 2))
            result.uncertainty = volume.with_array(entropy.astype(np.float32), model=bundle.name)
            foreground = labels > 0
            result.case_uncertainty = float(entropy[foreground].mean() if foreground.any() else entropy.mean())
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0
    counts = _counts(labels, max(bundle.labels, default=0) + 1)
    result.volumes_ml = {name: round(float(counts[value]) * voxel_ml, 3) for value, name in bundle.labels.items()
                         if value < len(counts)}
    result.seconds = time.perf_counter() - start
    return result


def _segment_one(bundle, model, networks, where, inferer, passes, amp, label, want_probs, notes, exact=False):
    """Labels (and probabilities) of ``where`` = ``(volume, slice index or None)``, back in its own grid.

    ``networks``: the network for the model's device, and a callable giving one on the CPU (or None).
    ``exact``: run the bundle's postprocessing as written even where :mod:`.fast_labels` applies.
    """
    grid = {}
    with float32_resampling(model.preprocessing, enabled=not exact):  # MONAI's default is float64 (2x memory)
        data = prepare_input(model, bundle, *where, notes, source=grid)  # the float32 image copy is freed inside
    source_affine, source_shape = grid.get("affine"), grid.get("shape")
    prepared = data["image"]
    dims = prepared.ndim - 1
    fast = None if exact else fast_labels.plan(model.postprocessing, model.preprocessing)
    if fast is not None and not fast_labels.fits(fast, getattr(prepared, "applied_operations", [])):
        fast = None  # an inversion other than linear: the bundle's own postprocessing
    scores = mean_probs = None
    for number, flip in enumerate(passes):
        batch = prepared.as_tensor()[None] if isinstance(prepared, MetaTensor) else prepared[None]
        batch = torch.flip(batch, flip) if flip else batch
        step = f"{label}, pass {number + 1}/{len(passes)}" if len(passes) > 1 else label
        logits = yield from infer(inferer, batch, networks[0], model.device, amp=amp, label=step,
                                  cpu_network=networks[1])
        del batch
        logits = (torch.flip(logits, flip) if flip else logits).cpu().float()
        if len(passes) > 1 or want_probs:   # one plain pass needs no extra softmax over the whole grid
            probs = _activate(logits)
            mean_probs = probs if mean_probs is None else mean_probs.add_(probs)
            del probs
        # One pass: the raw logits go through the bundle's own postprocessing, exactly as it expects.
        scores = logits[0] if len(passes) == 1 else None
        del logits
    if fast is not None:  # only the metadata of the image is read from here on
        data["image"] = _metadata_only(prepared)
        del prepared
    probs_out = None
    if mean_probs is not None:
        mean_probs = mean_probs.div_(len(passes))[0]
        if want_probs:
            inverted = Invertd(keys="prob", transform=model.preprocessing, orig_keys="image", nearest_interp=False)(
                {"image": data["image"], "prob": MetaTensor(mean_probs, meta=data["image"].meta,
                                                            applied_operations=data["image"].applied_operations)})
            probs_out = to_zyx(inverted.pop("prob"), dims)
        # Several passes: log of the mean probabilities, whose softmax is that mean.
        scores = torch.log(mean_probs.clamp_min_(_EPS)) if scores is None else scores
        del mean_probs
    if fast is not None:
        log.debug("label map: argmax on the model's grid, taken back by nearest neighbour%s",
                  "" if fast.exact else ", voxels between labels recomputed from interpolated scores")
        labels = fast_labels.label_map(scores, data, model.preprocessing, fast, source_affine, source_shape)
        return _as_labels(labels, dims), probs_out
    data["pred"] = MetaTensor(scores, meta=data["image"].meta, applied_operations=data["image"].applied_operations)
    del scores
    return _postprocess(model, data, dims), probs_out


def _metadata_only(image):
    """An empty MetaTensor with ``image``'s metadata and applied operations (what ``Invertd`` reads)."""
    if not isinstance(image, MetaTensor):
        return image
    return MetaTensor(torch.empty(0), meta=image.meta, applied_operations=image.applied_operations)


def _as_labels(tensor, dims) -> np.ndarray:
    """A ``(1, *spatial)`` label tensor as a ``(z, y, x)`` array of the smallest integer type that holds it."""
    tensor = torch.as_tensor(tensor)
    if tensor.is_floating_point():
        tensor = torch.round(tensor)
    low, high = (float(tensor.min()), float(tensor.max())) if tensor.numel() else (0.0, 0.0)
    dtype = (torch.uint8 if low >= 0 and high < 256 else torch.int16 if -32768 <= low and high < 32768
             else torch.int32)
    return to_zyx(tensor.to(dtype), dims)[0]


def _network_for(bundle, model, inferer, backend: str, notes: list[str]):
    """The torch network (channels-last on the CPU), or its exported twin for the CPU when asked and possible.

    ``backend`` ``"auto"``: the exported twin where :mod:`.backend_choice` measured it faster on this
    machine (once per network, window shape and machine), torch otherwise; never a note for the choice.
    """
    auto = backend == "auto"
    if backend in (None, "torch") or (auto and model.device.type != "cpu"):
        return _torch_network(model)
    if model.device.type != "cpu":
        notes.append(f"{backend} backend is for the CPU; running torch on {model.device.type}")
        return model.network
    if not isinstance(inferer, SlidingWindowInferer) or any(r is None or r <= 0 for r in inferer.roi_size):
        if not auto:
            notes.append(f"{backend} backend needs fixed-size sliding windows; running torch")
        return _torch_network(model)
    from .accelerate import accelerated, export_key

    weights = sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in (bundle.path / "models").glob("model.*"))
    key = export_key(str(bundle.path), weights)
    shape = (1, bundle.in_channels, *inferer.roi_size)
    if auto:
        from .backend_choice import choose

        if not isinstance(model.network, torch.nn.Module):
            return model.network
        backend = choose(model.network, (max(inferer.sw_batch_size, 1), *shape[1:]), key)
        log.info("--backend auto: windows run by %s", backend)
        if backend == "torch":
            return _torch_network(model)
    try:
        network = accelerated(model.network, shape, backend, key)
    except ModelError as exc:
        notes.append(f"{exc}; running torch")
        return _torch_network(model)
    if not auto:
        notes.append(f"windows run by {backend}")
    return network


def _torch_network(model):
    if model.device.type == "cpu":
        from .accelerate import channels_last

        return channels_last(model.network)
    return model.network


def _on_cpu(bundle, model, inferer, backend, notes):
    """For a GPU run, the last resort after running out of GPU memory: a callable giving the network of a
    CPU build (cached on its own; the GPU model stays as it is). None on the CPU."""
    if model.device.type == "cpu":
        return None
    return lambda: _network_for(bundle, loaded_model(bundle, torch.device("cpu")), inferer, backend, notes)


def _postprocess(model, data, dims) -> np.ndarray:
    if model.postprocessing is not None:
        out = _run_postprocessing(model.postprocessing, data)["pred"]
    else:
        out = Invertd(keys="pred", transform=model.preprocessing, orig_keys="image", nearest_interp=False)(data)["pred"]
    if out.shape[0] > 1:
        out = channel_argmax(torch.as_tensor(out), dim=0)
    return _as_labels(out, dims)


def _run_postprocessing(post, data: dict) -> dict:
    """The bundle's postprocessing, unchanged, with each argmax step's input laid out channel-innermost.

    ``AsDiscreted(argmax=True)`` calls ``torch.argmax`` over the leading channel axis, which on the CPU
    costs ~0.3 s for a 2-channel 160x160x64 map; the same call on a channel-innermost copy (same
    values, same shape, another memory order) takes ~0.01 s. The Compose runs in pieces split at
    those steps (``Compose.__call__(start, end)``), so every transform is still MONAI's own.
    """
    if not isinstance(post, Compose):
        return post(data)
    flat = post.flatten()
    start = 0
    for index, transform in enumerate(flat.transforms):
        if not (isinstance(transform, AsDiscreted) and any(transform.argmax)
                and transform.converter.kwargs.get("dim", 0) == 0):
            continue
        data = flat(data, start=start, end=index)
        if not isinstance(data, dict):
            return flat(data, start=index)
        for key in transform.keys:
            value = data.get(key)
            if isinstance(value, torch.Tensor) and value.device.type == "cpu" and value.ndim > 1:
                data[key] = _channels_innermost(value)
        start = index
    return flat(data, start=start)


def _channels_innermost(tensor: torch.Tensor) -> torch.Tensor:
    relaid = tensor.as_tensor() if isinstance(tensor, MetaTensor) else tensor
    relaid = relaid.movedim(0, -1).contiguous().movedim(-1, 0)
    if isinstance(tensor, MetaTensor):
        return MetaTensor(relaid, meta=tensor.meta, applied_operations=tensor.applied_operations)
    return relaid


def _activate(logits: torch.Tensor) -> torch.Tensor:
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def _inferer(bundle: Bundle, inferer, overlap, sw_batch_size):
    """This run's sliding window: the bundle's, with the run's overlap and windows per batch, Gaussian
    blending unless the bundle names a mode. A new inferer: the cached model's is shared by every run."""
    mode = None if "mode" in (bundle.config.get("inferer") or {}) else "gaussian"
    return for_this_run(inferer, overlap=overlap, sw_batch_size=sw_batch_size, mode=mode)


def _flips(spatial_dims: int) -> list[tuple[int, ...]]:
    """No flip, then a flip of each spatial axis of a ``(B, C, *spatial)`` batch."""
    return [()] + [(axis,) for axis in range(2, 2 + spatial_dims)]


def _compact(labels: np.ndarray) -> np.ndarray:
    if labels.max(initial=0) < 256 and labels.min(initial=0) >= 0:
        return labels.astype(np.uint8, copy=False)
    return labels


def _counts(labels: np.ndarray, minlength: int) -> np.ndarray:
    """Voxels of each label value (``np.bincount``), a slice at a time: no int64 copy of the whole map."""
    counts = np.zeros(minlength, np.int64)
    for piece in labels.reshape(labels.shape[0], -1):
        found = np.bincount(piece, minlength=len(counts))
        if len(found) > len(counts):
            counts = np.pad(counts, (0, len(found) - len(counts)))
        counts += found
    return counts
