"""The segmentation samples (``ct_organs_unet``, ``ct_organs_unetr``): bundle config, training on
phantoms, held-out metrics and the model card.

``medvision train NAME --output DIR`` regenerates one bundle: phantom cases from a seed, MONAI
transforms and losses, a fixed held-out split on other seeds, the metrics written into the card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Generator

import numpy as np
import torch

from ..core._atomic import write_json_atomic
from ..core.phantom import LABELS
from .common import HELD_OUT_SEED, PHANTOM, case_seeds, drain, package_version, torch_version, write_bundle

ORGAN_COLORS = {1: "#c8a07850", 2: "#4f9bd9", 3: "#b5473a", 4: "#8e5fbf", 5: "#e6c84f", 6: "#f2f2e6",
                7: "#39e639"}
SEG_PIXDIM = [5.0, 5.0, 8.0]
SEG_ROI = [64, 64, 32]
CT_WINDOW = {"a_min": -1000.0, "a_max": 1000.0, "b_min": 0.0, "b_max": 1.0, "clip": True}

NETWORKS = {
    "ct_organs_unet": {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 8,
                       "channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 1, "norm": "batch"},
    "ct_organs_unetr": {"_target_": "UNETR", "in_channels": 1, "out_channels": 8, "img_size": [64, 64, 32],
                        "feature_size": 8, "hidden_size": 96, "mlp_dim": 192, "num_heads": 4,
                        "proj_type": "conv", "norm_name": "batch", "res_block": True, "dropout_rate": 0.0},
}
DESCRIPTIONS = {
    "ct_organs_unet": "3D U-Net (MONAI UNet, 4 levels) segmenting body, lungs, liver, spleen, kidneys, "
                      "bone and lesions on CT at 5 x 5 x 8 mm",
    "ct_organs_unetr": "Small UNETR vision transformer (12 layers of width 96 on 16-voxel patches) for "
                       "the same organs and lesions, to compare with the U-Net",
}


def segmentation_preprocessing(keys=("image",), pixdim=SEG_PIXDIM, load=True) -> list[dict]:
    """The bundle's preprocessing (``LoadImaged`` first, as MONAI's own tools expect)."""
    keys = list(keys)
    modes = ["bilinear"] + ["nearest"] * (len(keys) - 1)
    steps = [{"_target_": "LoadImaged", "keys": keys}] if load else []
    return steps + [
        {"_target_": "EnsureChannelFirstd", "keys": keys},
        {"_target_": "Orientationd", "keys": keys, "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": keys, "pixdim": list(pixdim), "mode": modes},
        {"_target_": "ScaleIntensityRanged", "keys": "image", **CT_WINDOW},
        {"_target_": "EnsureTyped", "keys": keys},
    ]


def segmentation_bundle_config(name: str) -> tuple[dict, dict]:
    """``(inference.json, metadata.json)`` of a segmentation sample."""
    inference = {
        "bundle_root": ".",
        "network_def": NETWORKS[name],
        "preprocessing": {"_target_": "Compose", "transforms": segmentation_preprocessing()},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": SEG_ROI, "sw_batch_size": 2, "overlap": 0.25,
                    "mode": "gaussian"},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
             "nearest_interp": False, "to_tensor": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "eval", "output_postfix": "seg"},
        ]},
    }
    metadata = {
        "version": "1.0.0",
        "name": name,
        "task": "CT organ and lesion segmentation (synthetic phantoms)",
        "description": DESCRIPTIONS[name],
        "authors": "napari-medvision",
        "intended_use": "Demonstration on synthetic phantoms, not for diagnosis",
        "monai_version": package_version("monai"),
        "pytorch_version": torch_version(),
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "hounsfield", "modality": "CT", "num_channels": 1,
                                 "spatial_shape": SEG_ROI, "dtype": "float32", "value_range": [0, 1],
                                 "is_patch_data": True, "channel_def": {"0": "image"}}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 8,
                                 "spatial_shape": SEG_ROI, "dtype": "float32", "value_range": [0, 1],
                                 "is_patch_data": True,
                                 "channel_def": {str(v): k for k, v in LABELS.items()}}},
        },
        "medvision": {"task": "segmentation", "colors": {str(k): v for k, v in ORGAN_COLORS.items()},
                      "window": "Mediastinum / soft tissue"},
    }
    return inference, metadata


def phantom_items(seeds, keys_transform, progress=None) -> list[dict]:
    """Generated phantom cases run through the training preprocessing (cached in memory)."""
    from ..core.inference.convert import to_metatensor
    from ..core.phantom import generate_phantom

    items = []
    for number, seed in enumerate(seeds):
        case = generate_phantom(int(seed), **PHANTOM)
        items.append(keys_transform({"image": to_metatensor(case.image), "label": to_metatensor(case.label)}))
        if progress:
            progress(number + 1, len(seeds))
    return items


def train_segmentation_sample(name: str, output: str | Path, *, cases: int = 24, val_cases: int = 4,
                              test_cases: int = 8, seed: int = 0, epochs: int = 30, steps_per_epoch: int = 50,
                              max_minutes: float = 20.0, device: str = "auto",
                              real_data: Path | None = None) -> Generator[object, None, dict]:
    """Train one segmentation sample into the bundle folder ``output``; yields progress.

    Returns the metrics dict that is also written to the model card.
    """
    from monai.bundle import ConfigParser

    from ..core.models import choose_device, load_bundle
    from ..core.models.cache import clear
    from ..core.training.augmentation import train_transforms
    from ..core.training.trainer import TrainSettings, train_segmentation

    if name not in NETWORKS:
        raise ValueError(f"unknown segmentation sample {name!r}; choose one of {tuple(NETWORKS)}")
    output = Path(output)
    torch_device = choose_device(device)
    inference, metadata = segmentation_bundle_config(name)
    torch.manual_seed(seed)
    network = ConfigParser({"n": inference["network_def"]}).get_parsed_content("n")
    keys_transform = ConfigParser({"p": {"_target_": "Compose", "transforms": segmentation_preprocessing(
        ("image", "label"), load=False)}}).get_parsed_content("p")
    seeds = case_seeds(seed, cases + val_cases)
    items = []
    for number, item_seed in enumerate(seeds):
        items.extend(phantom_items([item_seed], keys_transform))
        yield f"phantom {number + 1}/{len(seeds)}"
    settings = TrainSettings(max_epochs=epochs, max_minutes=max_minutes, steps_per_epoch=steps_per_epoch,
                             roi_size=SEG_ROI, seed=seed, patience=8)
    result = yield from train_segmentation(network, items[:cases], items[cases:], len(LABELS), settings,
                                           torch_device, train_transforms(SEG_ROI))
    network.load_state_dict(result.best_state)
    write_bundle(output, inference, metadata, network)
    clear()
    yield "evaluating on held-out seeds"
    bundle = load_bundle(output)
    evaluation = evaluate_segmentation_bundle(bundle, case_seeds(seed + HELD_OUT_SEED, test_cases), device=device)
    metrics = {
        "training": {"cases": cases, "validation_cases": val_cases, "seed": seed, "seeds": [int(s) for s in seeds],
                     "best_epoch": result.best_epoch, "epochs_run": len(result.history),
                     "stopped_by": result.stopped_by, "minutes": round(result.seconds / 60, 1),
                     "best_validation_dice": round(result.best_dice, 4), "history": result.history},
        "held_out": evaluation,
    }
    if real_data is not None and real_data.is_dir():
        metrics["real_scans"] = real_scan_report(bundle, real_data)
    write_json_atomic(output / "docs" / "metrics.json", metrics)
    (output / "docs" / "README.md").write_text(segmentation_card(name, metadata, metrics), encoding="utf-8")
    return metrics


def evaluate_segmentation_bundle(bundle, seeds, device: str = "auto") -> dict:
    """Dice per label and CPU seconds per case of a bundle on phantoms it never saw."""
    from ..core.inference import segment
    from ..core.metrics import dice_per_label
    from ..core.phantom import generate_phantom

    per_case, seconds = [], []
    for case_seed in seeds:
        case = generate_phantom(int(case_seed), **PHANTOM)
        result = drain(segment(bundle, case.image, device=device))
        seconds.append(result.seconds)
        per_case.append(dice_per_label(result.labels.array, case.label.array, bundle.labels))
    names = list(bundle.labels.values())
    dice = {name: round(float(np.nanmean([c[name] for c in per_case])), 4) for name in names}
    return {"seeds": [int(s) for s in seeds], "dice": dice,
            "mean_dice": round(float(np.nanmean(list(dice.values()))), 4),
            "seconds_per_case": round(float(np.mean(seconds)), 2)}


def real_scan_report(bundle, folder: Path) -> list[dict]:
    """What the phantom-trained model does on the real (MR) scans: labelled volumes and lesion Dice."""
    from ..core.inference import segment
    from ..core.io import read_label_for, read_volume
    from ..core.metrics import dice_per_label

    report = []
    for image_path in sorted(folder.glob("*_image.nrrd")):
        label_path = image_path.with_name(image_path.name.replace("_image", "_label"))
        image = read_volume(image_path)
        result = drain(segment(bundle, image, device="cpu"))
        entry = {"scan": image_path.name, "volumes_ml": result.volumes_ml}
        if label_path.exists():
            tumour = read_label_for(image, label_path).array > 0
            entry["lesion_dice_vs_tumour"] = round(float(
                dice_per_label((result.labels.array == LABELS["lesion"]).astype(np.uint8), tumour.astype(np.uint8),
                               {1: "lesion"})["lesion"]), 4)
        report.append(entry)
    return report


def segmentation_card(name: str, metadata: dict, metrics: dict) -> str:
    training, held_out = metrics["training"], metrics["held_out"]
    rows = "\n".join(f"| {label} | {dice:.3f} |" for label, dice in held_out["dice"].items())
    real = ""
    for entry in metrics.get("real_scans", []):
        top = sorted(entry["volumes_ml"].items(), key=lambda kv: -kv[1])[:3]
        real += (f"| {entry['scan']} | " + ", ".join(f"{k} {v:.0f} mL" for k, v in top)
                 + f" | {entry.get('lesion_dice_vs_tumour', float('nan')):.3f} |\n")
    real_section = (
        "## On real scans (PyRadiomics test data, MR)\n\n"
        "The model was trained only on synthetic CT phantoms. On these real MR scans (a brain and a "
        "breast study) it still paints its CT organ labels, which these scans do not contain, and the "
        "lesion label does not match the tumour: expected, and why it is for demonstration only.\n\n"
        "| scan | largest predicted labels | lesion Dice vs tumour |\n|---|---|---|\n" + real + "\n"
        if real else "")
    return f"""# {name}

{metadata['description']}.

**Intended use:** demonstration on synthetic phantoms, not for diagnosis.

## Input
CT in Hounsfield units, any orientation and spacing. The bundle reorients to RAS, resamples to
{SEG_PIXDIM[0]} x {SEG_PIXDIM[1]} x {SEG_PIXDIM[2]} mm, scales -1000..1000 HU to 0..1, and runs a
Gaussian-weighted sliding window of {SEG_ROI} voxels. The label map comes back on the input grid.

## Labels
{', '.join(f'{v} {k}' for k, v in LABELS.items())}

## Training
Phantoms from `napari_medvision.core.phantom` (size, position, noise, contrast, lesion count and slice
thickness vary): {training['cases']} training and {training['validation_cases']} validation cases,
master seed {training['seed']}. MONAI `DiceCELoss`, AdamW, crops around foreground, small affine and
intensity augmentation. Best validation epoch {training['best_epoch']} of {training['epochs_run']}
(stopped by {training['stopped_by']}), {training['minutes']} min on a 2-core CPU.
Regenerate with `medvision train {name} --output DIR`.

## Held-out results
{len(held_out['seeds'])} phantoms from seeds the model never saw; Dice in the input geometry.

| label | Dice |
|---|---|
{rows}
| **mean** | **{held_out['mean_dice']:.3f}** |

CPU inference: {held_out['seconds_per_case']} s per case (2 cores, torch backend, end to end).

{real_section}"""
