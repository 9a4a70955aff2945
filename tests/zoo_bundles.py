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
