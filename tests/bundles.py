"""Small MONAI bundles made inside tests (random or hand-set weights)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from monai.bundle import ConfigParser

CT_PREPROCESSING = [
    {"_target_": "LoadImaged", "keys": "image"},
    {"_target_": "EnsureChannelFirstd", "keys": "image"},
    {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
    {"_target_": "Spacingd", "keys": "image", "pixdim": [6.0, 6.0, 8.0], "mode": "bilinear"},
    {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -1000, "a_max": 1000, "b_min": 0,
     "b_max": 1, "clip": True},
    {"_target_": "EnsureTyped", "keys": "image"},
]
SEG_POSTPROCESSING = [
    {"_target_": "Activationsd", "keys": "pred", "softmax": True},
    {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
     "nearest_interp": False, "to_tensor": True},
    {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
    {"_target_": "SaveImaged", "keys": "pred", "output_dir": "/nonexistent/should/not/be/written"},
]


def write_bundle(folder: Path, config: dict, metadata: dict, state_dict: dict | None = None) -> Path:
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(exist_ok=True)
    (folder / "configs" / "inference.json").write_text(json.dumps(config, indent=1))
    (folder / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=1))
    if state_dict is None:
        torch.manual_seed(0)
        network = ConfigParser(config).get_parsed_content("network_def")
        state_dict = network.state_dict()
    torch.save(state_dict, folder / "models" / "model.pt")
    return folder


def seg_metadata(labels: dict[int, str], **medvision) -> dict:
    meta = {"name": "test segmentation", "description": "made in a test",
            "network_data_format": {"inputs": {"image": {"num_channels": 1, "spatial_shape": [32, 32, 32]}},
                                    "outputs": {"pred": {"type": "image", "channel_def": {
                                        str(k): v for k, v in labels.items()}}}}}
    if medvision:
        meta["medvision"] = medvision
    return meta


def threshold_bundle(folder: Path, threshold_hu: float = 0.0, pixdim=(6.0, 6.0, 8.0)) -> Path:
    """A 1x1x1 convolution whose argmax is 'HU above threshold': an exact geometry probe."""
    pre = [dict(t) for t in CT_PREPROCESSING]
    pre[3] = {**pre[3], "pixdim": list(pixdim)}
    config = {
        "network_def": {"_target_": "torch.nn.Conv3d", "in_channels": 1, "out_channels": 2, "kernel_size": 1},
        "preprocessing": {"_target_": "Compose", "transforms": pre},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [16, 16, 16], "sw_batch_size": 2, "overlap": 0.25},
        "postprocessing": {"_target_": "Compose", "transforms": SEG_POSTPROCESSING},
    }
    scaled = (threshold_hu + 1000) / 2000  # where ScaleIntensityRanged puts the threshold
    state = {"weight": torch.tensor([-1.0, 1.0]).reshape(2, 1, 1, 1, 1) * 50,
             "bias": torch.tensor([scaled, -scaled]) * 50}
    return write_bundle(folder, config, seg_metadata({0: "background", 1: "dense"}), state)


def unet_bundle(folder: Path, labels: dict[int, str] | None = None, in_channels: int = 1) -> Path:
    labels = labels or {0: "background", 1: "liver", 2: "lung"}
    config = {
        "imports": ["$import os"],
        "output_dir": "$os.path.join(@bundle_root, 'eval')",
        "network_def": {"_target_": "UNet", "spatial_dims": 3, "in_channels": in_channels,
                        "out_channels": len(labels), "channels": [4, 8], "strides": [2], "num_res_units": 1},
        "preprocessing": {"_target_": "Compose", "transforms": CT_PREPROCESSING},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32], "sw_batch_size": 2, "overlap": 0.25},
        "postprocessing": {"_target_": "Compose", "transforms": SEG_POSTPROCESSING},
    }
    return write_bundle(folder, config, seg_metadata(labels))


def classifier_bundle(folder: Path) -> Path:
    config = {
        "network_def": {"_target_": "DenseNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                        "init_features": 8, "growth_rate": 8, "block_config": [2, 2], "bn_size": 2},
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "EnsureChannelFirstd", "keys": "image"},
            {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
            {"_target_": "Resized", "keys": "image", "spatial_size": [32, 32, 24]},
            {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -1000, "a_max": 400, "b_min": 0,
             "b_max": 1, "clip": True}]},
        "inferer": {"_target_": "SimpleInferer"},
    }
    metadata = {"name": "test classifier", "description": "lesion or not",
                "network_data_format": {"inputs": {"image": {"num_channels": 1}},
                                        "outputs": {"pred": {"type": "probabilities", "format": "classes",
                                                             "channel_def": {"0": "no lesion", "1": "lesion"}}}}}
    return write_bundle(folder, config, metadata)


def detector_bundle(folder: Path) -> Path:
    config = {
        "backbone": {"_target_": "monai.networks.nets.resnet.ResNet", "block": "basic", "layers": [1, 1, 1, 1],
                     "block_inplanes": [8, 16, 32, 64], "spatial_dims": 3, "n_input_channels": 1,
                     "conv1_t_stride": [2, 2, 1], "conv1_t_size": [7, 7, 7]},
        "feature_extractor": {"_target_": "monai.apps.detection.networks.retinanet_network.resnet_fpn_feature_extractor",
                              "backbone": "@backbone", "spatial_dims": 3, "pretrained_backbone": False,
                              "returned_layers": [1, 2], "trainable_backbone_layers": None},
        "network_def": {"_target_": "RetinaNet", "spatial_dims": 3, "num_classes": 1, "num_anchors": 3,
                        "feature_extractor": "@feature_extractor", "size_divisible": [16, 16, 8]},
        "anchor_generator": {"_target_": "monai.apps.detection.utils.anchor_utils.AnchorGeneratorWithAnchorShape",
                             "feature_map_scales": [1, 2, 4], "base_anchor_shapes": [[6, 8, 4], [8, 6, 5], [10, 10, 6]]},
        "detector": {"_target_": "RetinaNetDetector", "network": "@network_def", "anchor_generator": "@anchor_generator"},
        "preprocessing": {"_target_": "Compose", "transforms": CT_PREPROCESSING},
    }
    metadata = {"name": "test detector", "description": "nodules",
                "network_data_format": {"inputs": {"image": {"num_channels": 1}},
                                        "outputs": {"pred": {"type": "object"}}},
                "medvision": {"labels": {"0": "nodule"}, "score_threshold": 0.0}}
    return write_bundle(folder, config, metadata)


def spleen_bundle(shared_data: Path, folder: Path) -> Path:
    """The real spleen bundle's configs with random weights of its architecture."""
    shutil.copytree(shared_data / "monai_bundles" / "spleen_ct_segmentation", folder)
    parser = ConfigParser()
    parser.read_config(folder / "configs" / "inference.json")
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    (folder / "models").mkdir(exist_ok=True)
    torch.save(network.state_dict(), folder / "models" / "model.pt")
    return folder


def unet2d_bundle(folder: Path) -> Path:
    """A 2D model (as for X-rays), run slice by slice on 3D volumes."""
    pre = [{"_target_": "EnsureChannelFirstd", "keys": "image"},
           {"_target_": "Spacingd", "keys": "image", "pixdim": [6.0, 6.0], "mode": "bilinear"},
           {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -1000, "a_max": 1000, "b_min": 0,
            "b_max": 1, "clip": True}]
    config = {
        "network_def": {"_target_": "UNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 2,
                        "channels": [4, 8], "strides": [2], "num_res_units": 1},
        "preprocessing": {"_target_": "Compose", "transforms": pre},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32], "sw_batch_size": 2, "overlap": 0.25},
        "postprocessing": {"_target_": "Compose", "transforms": SEG_POSTPROCESSING[:3]},
    }
    metadata = seg_metadata({0: "background", 1: "thing"})
    metadata["network_data_format"]["inputs"]["image"]["spatial_shape"] = [32, 32]
    return write_bundle(folder, config, metadata)
