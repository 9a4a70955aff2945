"""Small bundles in the Model Zoo's interactive formats (DeepEdit, VISTA3D), made inside tests.

Same config keys and transforms as the zoo's ``spleen_deepedit_annotation`` and ``vista3d``
(loaders, guidance transforms, ``Invertd`` postprocessing, the evaluator keys we never build), with
tiny networks: random weights, or a hand-set 1x1x1 convolution whose output is readable (a probe).
The DeepEdit bundle reorients its clicks with a transform of its own ``scripts/``, as the zoo's does,
so it needs trust like the zoo's.
"""

from __future__ import annotations

import torch

from tests.bundles import write_bundle

LABEL_NAMES = {"organ": 1, "background": 0}
#: The bundle's own code: clicks given in the loaded image's voxels, moved to the reoriented image's.
ORIENT_SCRIPT = '''
import numpy as np
from monai.transforms import Transform


class OrientationGuidanceMultipleLabelDeepEditd(Transform):
    """Clicks (x, y, z voxels of the loaded image) -> voxels of the image after Orientationd."""

    def __init__(self, ref_image="image", label_names=None):
        self.ref_image, self.label_names = ref_image, label_names or {}

    def __call__(self, data):
        d = dict(data)
        image = d[self.ref_image]
        to_new = np.linalg.inv(np.asarray(image.affine, float)) @ np.asarray(image.meta["original_affine"], float)
        for name in self.label_names:
            points = np.asarray(d.get(name, []), float).reshape(-1, 3)
            if len(points):
                moved = (to_new[:3, :3] @ points.T).T + to_new[:3, 3]
                d[name] = np.rint(moved).astype(int).tolist()
        return d
'''


def deepedit_config(spatial_size=(32, 32, 32), probe: bool = False) -> dict:
    """``inference.json`` shaped as the zoo's DeepEdit annotation bundle (tiny DynUNet, or the probe)."""
    network = ({"_target_": "torch.nn.Conv3d", "in_channels": "$len(@label_names) + @number_intensity_ch",
                "out_channels": "$len(@label_names)", "kernel_size": 1} if probe else
               {"_target_": "DynUNet", "spatial_dims": 3, "in_channels": "$len(@label_names) + @number_intensity_ch",
                "out_channels": "$len(@label_names)", "kernel_size": [3, 3, 3], "strides": [1, 2, 2],
                "upsample_kernel_size": [2, 2], "filters": [8, 16, 32], "norm_name": "instance",
                "deep_supervision": False, "res_block": True})
    return {
        "imports": ["$import glob", "$import numpy", "$import os", "$import ignite"],
        "bundle_root": ".", "image_key": "image", "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": "/workspace/data", "datalist": "$list(sorted(glob.glob(@dataset_dir + '/*.nii.gz')))",
        "label_names": dict(LABEL_NAMES), "spatial_size": list(spatial_size), "number_intensity_ch": 1,
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": network, "network": "$@network_def.to(@device)",
        "preprocessing_transforms": [
            {"_target_": "LoadImaged", "keys": "@image_key", "reader": "ITKReader"},
            {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
            {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
            {"_target_": "ScaleIntensityRanged", "keys": "@image_key", "a_min": -175, "a_max": 250, "b_min": 0.0,
             "b_max": 1.0, "clip": True},
        ],
        "deepedit_transforms": [
            {"_target_": "scripts.transforms.OrientationGuidanceMultipleLabelDeepEditd", "ref_image": "@image_key",
             "label_names": "@label_names"},
            {"_target_": "AddGuidanceFromPointsDeepEditd", "ref_image": "@image_key", "guidance": "guidance",
             "label_names": "@label_names"},
            {"_target_": "Resized", "keys": "@image_key", "spatial_size": "@spatial_size", "mode": "area"},
            {"_target_": "ResizeGuidanceMultipleLabelDeepEditd", "guidance": "guidance", "ref_image": "@image_key"},
            {"_target_": "AddGuidanceSignalDeepEditd", "keys": "@image_key", "guidance": "guidance",
             "number_intensity_ch": "@number_intensity_ch"},
        ],
        "extra_transforms": [{"_target_": "EnsureTyped", "keys": "@image_key"}],
        "preprocessing": {"_target_": "Compose",
                          "transforms": "$@preprocessing_transforms + @deepedit_transforms + @extra_transforms"},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]", "transform": "@preprocessing"},
        "inferer": {"_target_": "SimpleInferer"},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "EnsureTyped", "keys": "pred"},
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "@image_key",
             "nearest_interp": False, "to_tensor": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir"},
        ]},
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataset",
                      "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing"},
        "initialize": ["$monai.utils.set_determinism(seed=123)"],
        "run": ["$@evaluator.run()"],
    }


def deepedit_metadata(spatial_size=(32, 32, 32)) -> dict:
    shape = list(spatial_size)
    return {"name": "Tiny DeepEdit annotation", "description": "made in a test", "task": "organ segmentation",
            "network_data_format": {
                "inputs": {"image": {"type": "image", "format": "hounsfield", "modality": "CT", "num_channels": 3,
                                     "spatial_shape": shape, "channel_def": {"0": "image"}}},
                "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 2,
                                     "spatial_shape": shape, "channel_def": {"0": "background", "1": "organ"}}}}}


def deepedit_bundle(folder, spatial_size=(32, 32, 32), probe: bool = False):
    """A DeepEdit annotation bundle; ``probe``: its network's organ logit is the organ guidance channel
    and the background logit a constant 0.5, so the mask is where the guidance exceeds half its peak."""
    config = deepedit_config(spatial_size, probe)
    state = None
    if probe:
        weight = torch.zeros(2, 3, 1, 1, 1)
        weight[1, 1] = 1.0
        state = {"weight": weight, "bias": torch.tensor([0.5, 0.0])}
    else:
        from monai.networks.nets import DynUNet

        torch.manual_seed(0)
        net = config["network_def"]
        state = DynUNet(3, 3, 2, net["kernel_size"], net["strides"], net["upsample_kernel_size"],
                        filters=net["filters"], norm_name="instance", res_block=True).state_dict()
    write_bundle(folder, config, deepedit_metadata(spatial_size), state)
    (folder / "scripts").mkdir(exist_ok=True)
    (folder / "scripts" / "__init__.py").write_text("")
    (folder / "scripts" / "transforms.py").write_text(ORIENT_SCRIPT)
    return folder


def vista3d_config(patch_size=(16, 16, 16), spacing=(1.5, 1.5, 1.5)) -> dict:
    """``inference.json`` shaped as the zoo's VISTA3D bundle, with a tiny VISTA3D (random weights)."""
    feature = 16
    network = {"_target_": "VISTA3D",
               "image_encoder": {"_target_": "SegResNetDS2", "in_channels": "@input_channels", "blocks_down": [1, 1, 1],
                                 "norm": "instance", "out_channels": feature, "init_filters": feature, "dsdepth": 1},
               "class_head": {"_target_": "monai.networks.nets.vista3d.ClassMappingClassify", "n_classes": 32,
                              "feature_size": feature, "use_mlp": True},
               "point_head": {"_target_": "monai.networks.nets.vista3d.PointMappingSAM", "feature_size": feature,
                              "n_classes": 32, "last_supported": 8}}
    return {
        "imports": ["$import glob", "$import os", "$import numpy as np", "$import copy", "$import json",
                    "$import pathlib"],
        "bundle_root": "./", "image_key": "image", "output_dir": "$@bundle_root + '/eval'",
        "input_dict": "${'image': '/data/case.nii.gz', 'label_prompt': [3]}",
        "metadata_path": "$@bundle_root + '/configs/metadata.json'",
        "metadata": "$json.loads(pathlib.Path(@metadata_path).read_text())",
        "labels_dict": "$@metadata['network_data_format']['outputs']['pred']['channel_def']",
        "subclass": {"2": [3, 4]}, "input_channels": 1, "resample_spacing": list(spacing), "sw_batch_size": 1,
        "patch_size": list(patch_size),
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')", "use_point_window": True,
        "network_def": network, "network": "$@network_def.to(@device)",
        "preprocessing_transforms": [
            {"_target_": "LoadImaged", "keys": "@image_key", "image_only": True},
            {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
            {"_target_": "EnsureTyped", "keys": "@image_key", "device": "@device", "track_meta": True},
            {"_target_": "Spacingd", "keys": "@image_key", "pixdim": "@resample_spacing", "mode": "bilinear"},
            {"_target_": "CropForegroundd", "keys": "@image_key", "allow_smaller": True, "margin": 10,
             "source_key": "@image_key"},
            {"_target_": "monai.apps.vista3d.transforms.VistaPreTransformd", "keys": "@image_key",
             "subclass": "@subclass", "labels_dict": "@labels_dict"},
            {"_target_": "ScaleIntensityRanged", "keys": "@image_key", "a_min": -963.8, "a_max": 1053.7, "b_min": 0,
             "b_max": 1, "clip": True},
            {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
            {"_target_": "CastToTyped", "keys": "@image_key", "dtype": "$torch.float32"},
        ],
        "preprocessing": {"_target_": "Compose", "transforms": "$@preprocessing_transforms "},
        "inferer": {"_target_": "scripts.inferer.Vista3dInferer", "roi_size": "@patch_size", "overlap": 0.3,
                    "sw_batch_size": "@sw_batch_size", "use_point_window": "@use_point_window"},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "ToDeviced", "keys": "pred", "device": "cpu", "_disabled_": True},
            {"_target_": "monai.apps.vista3d.transforms.VistaPostTransformd", "keys": "pred"},
            {"_target_": "Invertd", "keys": "pred", "transform": "$copy.deepcopy(@preprocessing)",
             "orig_keys": "@image_key", "nearest_interp": True, "to_tensor": True},
            {"_target_": "Lambdad", "func": "$lambda x: torch.nan_to_num(x, nan=255)", "keys": "pred"},
            {"_target_": "SaveImaged", "keys": "pred", "resample": False, "output_dir": "@output_dir"},
        ]},
        "evaluator": {"_target_": "scripts.evaluator.Vista3dEvaluator", "device": "@device", "network": "@network",
                      "inferer": "@inferer", "postprocessing": "@postprocessing"},
        "run": ["$@evaluator.run()"],
    }


#: The bundle's own inferer class (the zoo's wraps point_based_window_inferer; ours only keeps its settings).
VISTA_INFERER_SCRIPT = '''
class Vista3dInferer:
    def __init__(self, roi_size, overlap=0.5, sw_batch_size=1, use_point_window=False):
        self.roi_size, self.overlap = list(roi_size), overlap
        self.sw_batch_size, self.use_point_window = sw_batch_size, use_point_window
'''


def vista3d_bundle(folder, patch_size=(16, 16, 16), spacing=(1.5, 1.5, 1.5)):
    """A VISTA3D bundle: zoo-shaped config, tiny random-weight network, its own ``scripts/`` inferer."""
    from monai.bundle import ConfigParser

    config = vista3d_config(patch_size, spacing)
    torch.manual_seed(0)
    parser = ConfigParser({"input_channels": 1, "network_def": config["network_def"]})
    state = parser.get_parsed_content("network_def").state_dict()
    labels = {"0": "background", "1": "liver", "2": "kidney", "3": "left kidney", "4": "right kidney"}
    metadata = {"name": "Tiny VISTA3D", "description": "made in a test",
                "network_data_format": {
                    "inputs": {"image": {"type": "image", "num_channels": 1, "spatial_shape": list(patch_size)}},
                    "outputs": {"pred": {"type": "image", "format": "segmentation", "channel_def": labels}}}}
    write_bundle(folder, config, metadata, state)
    (folder / "scripts").mkdir(exist_ok=True)
    (folder / "scripts" / "__init__.py").write_text("")
    (folder / "scripts" / "inferer.py").write_text(VISTA_INFERER_SCRIPT)
    return folder
