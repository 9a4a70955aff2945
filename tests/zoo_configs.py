"""Inference configs shaped like the public MONAI Model Zoo's, one per pattern they use.

Each entry: ``name -> (config, runs_untrusted)``. ``runs_untrusted`` is the issue-22 rule
written down by hand: True when the parts we use (network_def, preprocessing, inferer,
postprocessing, detector) hold no lambda, no call and no code of the bundle's own.
"""

from __future__ import annotations

import copy

_PRE = [
    {"_target_": "LoadImaged", "keys": "image"},
    {"_target_": "EnsureChannelFirstd", "keys": "image"},
    {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
    {"_target_": "Spacingd", "keys": "image", "pixdim": [1.5, 1.5, 2.0], "mode": "bilinear"},
    {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -57, "a_max": 164, "b_min": 0, "b_max": 1,
     "clip": True},
    {"_target_": "EnsureTyped", "keys": "image"},
]
_POST = [
    {"_target_": "Activationsd", "keys": "pred", "softmax": True},
    {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
     "nearest_interp": False, "to_tensor": True},
    {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
    {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_dtype": "$numpy.uint8"},
]
_COMMON = {
    "imports": ["$import glob", "$import numpy", "$import os"],
    "bundle_root": ".",
    "output_dir": "$@bundle_root + '/eval'",
    "dataset_dir": "/workspace/data",
    "datalist": "$list(sorted(glob.glob(@dataset_dir + '/*.nii.gz')))",
    "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    "network": "$@network_def.to(@device)",
    "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]", "transform": "@preprocessing"},
    "initialize": ["$monai.utils.set_determinism(seed=123)"],
    "run": ["$@evaluator.run()"],
}
_UNET = {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [16, 32, 64],
         "strides": [2, 2], "num_res_units": 2, "norm": "batch"}


def _bundle(network=None, pre=None, inferer=None, post=None, **extra) -> dict:
    config = copy.deepcopy(_COMMON)
    config.update(
        network_def=copy.deepcopy(network or _UNET),
        preprocessing={"_target_": "Compose", "transforms": copy.deepcopy(pre if pre is not None else _PRE)},
        inferer=copy.deepcopy(inferer or {"_target_": "SlidingWindowInferer", "roi_size": [96, 96, 96],
                                          "sw_batch_size": 4, "overlap": 0.5}),
        postprocessing={"_target_": "Compose", "transforms": copy.deepcopy(post if post is not None else _POST)},
    )
    config.update(copy.deepcopy(extra))
    return config


def _with(transforms: list, index: int, **changes) -> list:
    transforms = copy.deepcopy(transforms)
    transforms[index] = {**transforms[index], **changes}
    return transforms


def zoo_configs() -> dict[str, tuple[dict, bool]]:
    """Every zoo-like config with whether it should run without trust."""
    referenced = _bundle(preprocessing_transforms=copy.deepcopy(_PRE))
    referenced["preprocessing"]["transforms"] = "$@preprocessing_transforms"
    concatenated = _bundle(base_transforms=copy.deepcopy(_PRE[:3]), intensity_transforms=copy.deepcopy(_PRE[3:]))
    concatenated["preprocessing"]["transforms"] = "$@base_transforms + @intensity_transforms"
    whole_ref = _bundle(pre_compose={"_target_": "Compose", "transforms": copy.deepcopy(_PRE)})
    whole_ref["preprocessing"] = "@pre_compose"
    return {
        "plain_unet": (_bundle(), True),
        "segresnet_normalize": (_bundle(
            network={"_target_": "SegResNet", "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1], "init_filters": 16,
                     "in_channels": 4, "out_channels": 3, "dropout_prob": 0.2},
            pre=[*_PRE[:2], {"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True,
                             "channel_wise": True}],
            post=[{"_target_": "Activationsd", "keys": "pred", "sigmoid": True},
                  {"_target_": "AsDiscreted", "keys": "pred", "threshold": 0.5}]), True),
        "dtype_constant": (_bundle(pre=_with(_PRE, 5, dtype="$torch.float32")), True),
        "numpy_dtype": (_bundle(post=_with(_POST, 2, dtype="$np.uint8")), True),
        "none_expression": (_bundle(network={**_UNET, "dropout": "$None"}), True),
        "len_of_reference": (_bundle(spatial_size=[96, 96, 96],
                                     network={**_UNET, "spatial_dims": "$len(@spatial_size)"}), True),
        "overlap_arithmetic": (_bundle(out_size=64, patch_size=96, inferer={
            "_target_": "SlidingWindowInferer", "roi_size": [96, 96, 96], "sw_batch_size": 4,
            "overlap": "$1.0 - float(@out_size) / float(@patch_size)"}), True),
        "conditional_spacing": (_bundle(highres=False, pre=_with(
            _PRE, 3, pixdim="$[1.5, 1.5, 1.5] if @highres else [3.0, 3.0, 3.0]")), True),
        "referenced_roi": (_bundle(patch=[96, 96, 64], inferer={
            "_target_": "SlidingWindowInferer", "roi_size": "@patch", "sw_batch_size": 2, "overlap": 0.25}), True),
        "indexed_references": (_bundle(patch=[96, 96, 64], inferer={
            "_target_": "SlidingWindowInferer", "roi_size": "$[@patch[0], @patch[1], @patch[2]]",
            "sw_batch_size": 2, "overlap": 0.25}), True),
        "string_concatenation": (_bundle(suffix="seg", post=_with(_POST, 2, _desc_="$'argmax of ' + @suffix")),
                                 True),
        "preprocessing_by_reference": (referenced, True),
        "preprocessing_concatenated": (concatenated, True),
        "preprocessing_compose_by_reference": (whole_ref, True),
        "image_key_references": (_bundle(image_key="image", pre=[
            {**t, "keys": "@image_key"} for t in _PRE]), True),
        "swin_unetr": (_bundle(network={"_target_": "SwinUNETR", "in_channels": 1, "out_channels": 14,
                                        "feature_size": 48, "use_checkpoint": True}), True),
        "torchvision_fc_classifier": (_bundle(
            network={"_target_": "TorchVisionFCModel", "model_name": "resnet18", "num_classes": 2,
                     "pretrained": False}, inferer={"_target_": "SimpleInferer"}, post=[]), True),
        "pretrained_download": (_bundle(
            network={"_target_": "TorchVisionFCModel", "model_name": "resnet18", "num_classes": 2,
                     "pretrained": True}, inferer={"_target_": "SimpleInferer"}, post=[]), False),
        "range_call": (_bundle(post=[*_POST[:3], {"_target_": "KeepLargestConnectedComponentd", "keys": "pred",
                                                  "applied_labels": "$list(range(1, 14))"}]), False),
        "lambda_transform": (_bundle(post=[*_POST[:3], {"_target_": "Lambdad", "keys": "pred",
                                                        "func": "$lambda x: x[0:1]"}]), False),
        "scripts_network": (_bundle(network={"_target_": "scripts.networks.MyUNet", "in_channels": 1}), False),
        "method_call_network": (_bundle(network_def_raw=copy.deepcopy(_UNET),
                                        network_def="$@network_def_raw.to(@device)"), False),
        "callable_activation": (_bundle(post=[{"_target_": "Activationsd", "keys": "pred", "other": {
            "_target_": "torch.sigmoid", "_mode_": "callable"}}]), False),
        "detector_ops": (_detector(ops=True), False),
        "detector_plain": (_detector(ops=False), True),
    }


def _detector(ops: bool) -> dict:
    config = _bundle(
        network={"_target_": "RetinaNet", "spatial_dims": 3, "num_classes": 1, "num_anchors": 3,
                 "feature_extractor": "@feature_extractor", "size_divisible": [16, 16, 8]},
        backbone={"_target_": "monai.networks.nets.resnet.ResNet", "block": "basic", "layers": [3, 4, 6, 3],
                  "block_inplanes": [64, 128, 256, 512], "spatial_dims": 3, "n_input_channels": 1,
                  "conv1_t_stride": [2, 2, 1], "conv1_t_size": [7, 7, 7]},
        feature_extractor={"_target_": "monai.apps.detection.networks.retinanet_network."
                                       "resnet_fpn_feature_extractor", "backbone": "@backbone",
                           "spatial_dims": 3, "pretrained_backbone": False, "trainable_backbone_layers": None,
                           "returned_layers": [1, 2]},
        anchor_generator={"_target_": "monai.apps.detection.utils.anchor_utils.AnchorGeneratorWithAnchorShape",
                          "feature_map_scales": [1, 2, 4], "base_anchor_shapes": [[6, 8, 4], [8, 6, 5]]},
        detector={"_target_": "RetinaNetDetector", "network": "@network_def",
                  "anchor_generator": "@anchor_generator", "debug": False},
    )
    config["detector_ops"] = (["$@detector.set_target_keys(box_key='box', label_key='label')",
                               "$@detector.set_box_selector_parameters(score_thresh=0.02, topk_candidates_per_level"
                               "=1000, nms_thresh=0.22, detections_per_img=300)"] if ops else [])
    del config["postprocessing"]
    return config
