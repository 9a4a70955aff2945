"""Build a small but genuine nnU-Net v2 model (run as a script, with nnU-Net's environment variables set).

``python nnunet_builder.py [FOLDS...] [--full-width]`` plans every dataset already written to
``$nnUNet_raw`` (``DatasetNNN_Name``) with nnU-Net's own fingerprint extractor and
experiment planner, then saves, per fold, an untrained network (built as
``nnUNetTrainer.initialize`` builds it, with nnU-Net's random initialisation, a different
seed per fold) through ``nnUNetTrainer.save_checkpoint``, so the checkpoint holds exactly
what a trained model's does. The results folder is
``$nnUNet_results/DatasetNNN_Name/nnUNetTrainer__nnUNetPlans__3d_fullres``.
Used by tests/core/test_nnunet.py and benchmarks/nnunet.py.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

DATASET = "Dataset001_Phantom"
REGIONS = "Dataset002_Regions"  # two input channels, BraTS-style region labels
MODEL = "nnUNetTrainer__nnUNetPlans__3d_fullres"


def main(folds: list[int], narrow: bool = True) -> None:
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments

    datasets = sorted(p.name for p in Path(os.environ["nnUNet_raw"]).glob("Dataset[0-9][0-9][0-9]_*"))
    ids = [int(name[len("Dataset"):len("Dataset") + 3]) for name in datasets]
    extract_fingerprints(ids, num_processes=1, check_dataset_integrity=False, clean=True, verbose=False)
    plan_experiments(ids)
    for name in datasets:
        print(save_model(name, folds, narrow))


def save_model(dataset: str, folds: list[int], narrow: bool) -> Path:
    """Per fold, an untrained 3d_fullres network saved by nnU-Net's trainer; returns the results folder."""
    import numpy as np
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json, save_json
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    preprocessed = Path(os.environ["nnUNet_preprocessed"]) / dataset
    plans = load_json(str(preprocessed / "nnUNetPlans.json"))
    # A narrow network (4 features at the top instead of 32) keeps CPU tests fast; users edit plans the same way.
    for config in plans["configurations"].values() if narrow else ():
        kwargs = config.get("architecture", {}).get("arch_kwargs", {})
        if "features_per_stage" in kwargs:
            kwargs["features_per_stage"] = [min(4 * 2**i, 32) for i in range(len(kwargs["features_per_stage"]))]
    save_json(plans, str(preprocessed / "nnUNetPlans.json"), sort_keys=False)
    dataset_json = load_json(str(preprocessed / "dataset.json"))
    out = Path(os.environ["nnUNet_results"]) / dataset / MODEL
    for fold in folds:
        torch.manual_seed(fold)
        trainer = nnUNetTrainer({**plans, "continue_training": False}, "3d_fullres", fold, dataset_json,
                                device=torch.device("cpu"))
        # what trainer.initialize() sets up, without the preprocessed training data it also looks for
        channels = determine_num_input_channels(trainer.plans_manager, trainer.configuration_manager, dataset_json)
        trainer.network = trainer.build_network_architecture(
            trainer.plans_manager, trainer.configuration_manager, channels,
            trainer.label_manager.num_segmentation_heads, trainer.enable_deep_supervision)
        trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
        trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()  # sets the mirroring axes
        for key in ("train_losses", "val_losses", "mean_fg_dice", "ema_fg_dice"):
            trainer.logger.log(key, np.float64(0.5), 0)  # numpy scalars, as a real epoch logs them
        trainer.logger.log("dice_per_class_or_region", [np.float64(0.5)], 0)
        trainer._best_ema = np.float64(0.5)
        (out / f"fold_{fold}").mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(str(out / f"fold_{fold}" / "checkpoint_final.pth"))
    shutil.copy(preprocessed / "nnUNetPlans.json", out / "plans.json")
    shutil.copy(preprocessed / "dataset.json", out / "dataset.json")
    return out


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--full-width"]
    main([int(f) for f in arguments] or [0], narrow="--full-width" not in sys.argv)
