"""``medvision import``: a bundle folder, an nnU-Net folder or zip, or a TorchScript / ONNX file -> the user's models.

Everything is assembled in a temporary folder beside the destination, checked to load, and
renamed into place, so a failed or cancelled import leaves nothing behind. A bare network
file says nothing about what it segments or how the image must be prepared: the caller
states it (:class:`NetworkFacts`) and the import writes a MONAI bundle around it, with MONAI
transforms for the spacing and intensity normalisation and a sliding-window inferer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .._atomic import write_json_atomic
from ..errors import ModelError
from .nnunet import CHECKPOINTS, _FOLDER, is_nnunet_folder, load_checkpoint, single_model_folder
from .registry import BARE_NETWORK_SUFFIXES, EXPECTED_KINDS, load_model, user_models_folder

_NAME = re.compile(r"^[\w][\w.-]*$")


@dataclass
class NetworkFacts:
    """What a bare TorchScript / ONNX segmentation network cannot say about itself.

    Attributes:
        labels: output channel -> name (channel 0 is background).
        patch_size: sliding-window size in the network's (x, y, z) order after MONAI loading.
        spacing: voxel size (mm, x, y, z) the network expects; None: as the image comes.
        window: CT window ``(low, high)`` in HU mapped to 0..1, or
        percentiles: MR ``(low, high)`` intensity percentiles mapped to 0..1.
        in_channels: input channels.
        orientation: axis codes the image is turned to first (e.g. ``RAS``, as MONAI training scripts do);
            None: as loaded.
        overlap: sliding-window overlap (0..1).
        task: only ``segmentation`` is supported for bare networks.
    """

    labels: dict[int, str]
    patch_size: tuple[int, ...]
    spacing: tuple[float, ...] | None = None
    window: tuple[float, float] | None = None
    percentiles: tuple[float, float] | None = None
    in_channels: int = 1
    orientation: str | None = None
    overlap: float = 0.5
    task: str = "segmentation"


def import_model(source: str | Path, name: str | None = None, facts: NetworkFacts | None = None,
                 destination: str | Path | None = None, trusted: bool = False) -> Path:
    """Copy ``source`` into ``destination`` (default: the user's models folder) as model ``name``.

    Returns:
        The new model folder (it loads: weights read, nnU-Net checkpoints checked).

    Raises:
        ModelError: unknown kind (listing the kinds), a name already taken, facts missing for a
            bare network, or a model that does not load.
    """
    source = Path(source).expanduser()
    if not source.exists():
        raise ModelError(f"'{source}' does not exist")
    folder = Path(destination) if destination else user_models_folder()
    name = name or _default_name(source)
    if not _NAME.match(name):
        raise ModelError(f"'{name}' is not a usable model name (letters, digits, '_', '-', '.')")
    target = folder / name
    if target.exists():
        raise ModelError(f"a model called '{name}' already exists in {folder}; choose another --name")
    folder.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=folder))
    try:
        staged = temp / name
        _stage(source, staged, facts)
        model = load_model(staged, trusted)
        _check_loads(model, trusted)
        os.replace(staged, target)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return target


def _stage(source: Path, staged: Path, facts: NetworkFacts | None) -> None:
    if source.is_dir() and (source / "configs").is_dir():
        shutil.copytree(source, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".git"))
    elif source.is_dir() and (is_nnunet_folder(source) or any(source.rglob("plans.json"))):
        _copy_nnunet(single_model_folder(source, source.name) if not is_nnunet_folder(source) else source, staged)
    elif source.is_file() and source.suffix.lower() == ".zip":
        from .archive import safe_extract

        unpacked = safe_extract(source, staged.parent / "unpacked", patterns=("*.json", "*fold_*/checkpoint_*.pth"))
        _copy_nnunet(single_model_folder(unpacked, source.name), staged, move=True)
    elif source.is_file() and source.suffix.lower() in BARE_NETWORK_SUFFIXES:
        if facts is None:
            raise ModelError(f"'{source.name}' is a bare network: say what it does (--task segmentation --labels "
                             "1=liver,... --patch-size X Y Z, and --spacing / --window or --percentiles)")
        write_network_bundle(source, staged, facts)
    else:
        raise ModelError(f"'{source}' is not a model; expected " + "; or ".join(EXPECTED_KINDS)
                         + "; or a TorchScript (.ts/.pt) or ONNX (.onnx) file")


def _copy_nnunet(source: Path, staged: Path, move: bool = False) -> None:
    """Only what predicting needs: dataset.json, plans.json, fold_*/checkpoint_*.pth (never .pkl files)."""
    staged.mkdir(parents=True)
    transfer = shutil.move if move else shutil.copy2
    for name in ("dataset.json", "plans.json"):
        transfer(str(source / name), str(staged / name))
    for fold in sorted(source.glob("fold_*")):
        for checkpoint in CHECKPOINTS:
            if (fold / checkpoint).is_file():
                (staged / fold.name).mkdir(exist_ok=True)
                transfer(str(fold / checkpoint), str(staged / fold.name / checkpoint))
    match = _FOLDER.match(source.name)
    if match:
        write_json_atomic(staged / "medvision.json", {"kind": "nnunet", "trainer": match["trainer"],
                                                      "plans": match["plans"],
                                                      "configuration": match["configuration"]})


def _check_loads(model, trusted: bool) -> None:
    """Read every weight file the model would use (nothing of the author's code runs)."""
    import torch

    if model.kind == "nnunet":
        model.check_architecture()
        for fold in model.available_folds():
            load_checkpoint(model.checkpoint_path(fold))
        return
    model.task  # noqa: B018 - a bad task fails now
    if trusted or not model.code_findings():
        model.build(torch.device("cpu"))


def write_network_bundle(network_file: Path, bundle: Path, facts: NetworkFacts) -> None:
    """A MONAI bundle around a TorchScript or ONNX segmentation network.

    Raises:
        ModelError: a task other than segmentation, no labels, a bad patch size or normalisation.
    """
    if facts.task != "segmentation":
        raise ModelError("a bare TorchScript / ONNX network can be imported for segmentation only "
                         "(for another task, wrap it in a MONAI bundle)")
    if not facts.labels:
        raise ModelError("say what the network's output channels are: --labels 1=liver,2=spleen")
    if not facts.patch_size or any(int(p) < 1 for p in facts.patch_size):
        raise ModelError("give the network's window size: --patch-size X Y Z (e.g. 96 96 96)")
    if facts.window and facts.percentiles:
        raise ModelError("give either a CT window (--window) or MR percentiles (--percentiles), not both")
    onnx = network_file.suffix.lower() == ".onnx"
    kind = "onnx" if onnx else "torchscript"
    if not onnx:
        _check_torchscript(network_file)
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    shutil.copy2(network_file, bundle / "models" / ("model.onnx" if onnx else "model.ts"))
    channels = {"0": "background", **{str(k): v for k, v in sorted(facts.labels.items()) if k != 0}}
    spatial = len(facts.patch_size)
    metadata = {
        "version": "1.0.0", "name": network_file.stem,
        "description": f"{kind} network {network_file.name}, imported by medvision",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "num_channels": facts.in_channels,
                                 "spatial_shape": list(facts.patch_size)}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": len(channels),
                                 "channel_def": channels}}},
        "medvision": {"kind": kind, "task": "segmentation"},
    }
    write_json_atomic(bundle / "configs" / "metadata.json", metadata)
    write_json_atomic(bundle / "configs" / "inference.json", _inference_config(facts, spatial))


def _inference_config(facts: NetworkFacts, spatial: int) -> dict:
    pre = [{"_target_": "LoadImaged", "keys": "image"}, {"_target_": "EnsureChannelFirstd", "keys": "image"}]
    if facts.orientation:
        pre.append({"_target_": "Orientationd", "keys": "image", "axcodes": facts.orientation})
    if facts.spacing:
        if len(facts.spacing) != spatial:
            raise ModelError(f"--spacing has {len(facts.spacing)} values; the patch size has {spatial}")
        pre.append({"_target_": "Spacingd", "keys": "image", "pixdim": list(facts.spacing), "mode": "bilinear"})
    if facts.window:
        low, high = facts.window
        pre.append({"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": low, "a_max": high,
                    "b_min": 0.0, "b_max": 1.0, "clip": True})
    elif facts.percentiles:
        low, high = facts.percentiles
        pre.append({"_target_": "ScaleIntensityRangePercentilesd", "keys": "image", "lower": low, "upper": high,
                    "b_min": 0.0, "b_max": 1.0, "clip": True})
    pre.append({"_target_": "EnsureTyped", "keys": "image"})
    post = [{"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
             "nearest_interp": False, "to_tensor": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True}]
    return {"bundle_root": ".",
            "preprocessing": {"_target_": "Compose", "transforms": pre},
            "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [int(p) for p in facts.patch_size],
                        "sw_batch_size": 1, "overlap": float(facts.overlap), "mode": "gaussian"},
            "postprocessing": {"_target_": "Compose", "transforms": post}}


def _check_torchscript(path: Path) -> None:
    import torch

    try:
        torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"'{path.name}' is not a TorchScript file ({str(exc).splitlines()[0][:160]}); "
                         "a state dict needs its network: wrap it in a MONAI bundle") from None


def _default_name(source: Path) -> str:
    if source.is_dir() and not (source / "configs").is_dir():
        folder = source if is_nnunet_folder(source) else None
        if folder is not None and _FOLDER.match(folder.name):
            dataset = json.loads((folder / "plans.json").read_text(encoding="utf-8")).get("dataset_name", "nnunet")
            return f"{dataset}__{_FOLDER.match(folder.name)['configuration']}"
    stem = source.name.split(".")[0] if source.is_file() else source.name
    return re.sub(r"[^\w.-]", "_", stem) or "model"
