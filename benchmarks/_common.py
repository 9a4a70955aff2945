"""Shared set-up for the benchmarks: a phantom study and a bundle of the spleen bundle's architecture."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_SPLEEN = ROOT.parent / "shared" / "data" / "monai_bundles" / "spleen_ct_segmentation"

# The public spleen bundle's network, transforms and window (used when ../shared is absent).
SPLEEN_LIKE = {
    "network_def": {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                    "channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2, "norm": "batch"},
    "preprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": "image", "pixdim": [1.5, 1.5, 2.0], "mode": "bilinear"},
        {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -57, "a_max": 164, "b_min": 0, "b_max": 1,
         "clip": True},
        {"_target_": "EnsureTyped", "keys": "image"}]},
    "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [96, 96, 96], "sw_batch_size": 4, "overlap": 0.5},
    "postprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "Activationsd", "keys": "pred", "softmax": True},
        {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
         "nearest_interp": False, "to_tensor": True},
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True}]},
}


def make_bundle(folder: Path) -> tuple[Path, str]:
    """The spleen bundle (real configs when ../shared has them) with seeded random weights."""
    from monai.bundle import ConfigParser

    if folder.exists():
        shutil.rmtree(folder)
    if SHARED_SPLEEN.is_dir():
        shutil.copytree(SHARED_SPLEEN, folder)
        source = "public spleen_ct_segmentation configs"
    else:
        (folder / "configs").mkdir(parents=True)
        (folder / "configs" / "inference.json").write_text(json.dumps(SPLEEN_LIKE))
        (folder / "configs" / "metadata.json").write_text(json.dumps({"name": "spleen-like", "network_data_format": {
            "outputs": {"pred": {"type": "image", "channel_def": {"0": "background", "1": "spleen"}}}}}))
        source = "built-in copy of the spleen bundle's architecture"
    parser = ConfigParser()
    parser.read_config(folder / "configs" / "inference.json")
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    (folder / "models").mkdir(exist_ok=True)
    torch.save(network.state_dict(), folder / "models" / "model.pt")
    return folder, source


def make_study(path: Path, shape=(64, 160, 160), spacing=(2.5, 2.5, 3.0)) -> Path:
    from napari_medvision.core.io import write_volume
    from napari_medvision.core.phantom import generate_phantom

    write_volume(generate_phantom(7, shape=shape, spacing=spacing).image, path)
    return path
