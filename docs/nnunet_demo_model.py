"""Train the small nnU-Net v2 model the user guide's nnU-Net screenshot shows (one nnU-Net epoch on phantoms).

    .venv/bin/python docs/nnunet_demo_model.py OUT_DIR

Writes 8 phantom CT cases in nnU-Net's raw layout, plans them with nnU-Net's own planner
(networks narrowed to 8 features at the top so the CPU copes), preprocesses, and runs
``nnUNetv2_train 1 3d_fullres 0 -tr nnUNetTrainer_1epoch`` on the CPU (about 3 minutes on two
cores). The model is ``OUT_DIR/results/Dataset001_Phantom/nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres``:
a demonstration of the model kind, not a useful segmenter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DATASET = "Dataset001_Phantom"


def plan(out: Path) -> None:
    from batchgenerators.utilities.file_and_folder_operations import load_json, save_json
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess

    extract_fingerprints([1], num_processes=1, check_dataset_integrity=False, clean=True, verbose=False)
    plan_experiments([1])
    path = out / "preprocessed" / DATASET / "nnUNetPlans.json"
    plans = load_json(str(path))
    for config in plans["configurations"].values():
        kwargs = config.get("architecture", {}).get("arch_kwargs", {})
        if "features_per_stage" in kwargs:
            kwargs["features_per_stage"] = [min(8 * 2**i, 64) for i in range(len(kwargs["features_per_stage"]))]
    save_json(plans, str(path), sort_keys=False)
    preprocess([1], configurations=("3d_fullres",), num_processes=(1,))


def main(out: Path) -> Path:
    from napari_medvision.core.phantom import write_phantom_dataset

    write_phantom_dataset(out / "raw" / DATASET, cases=8, seed=0, shape=(32, 64, 64), spacing=(5.6, 5.6, 10.0),
                          max_lesions=1)
    plan(out)
    env = dict(os.environ, nnUNet_n_proc_DA="0")
    subprocess.run([str(Path(sys.executable).parent / "nnUNetv2_train"), "1", "3d_fullres", "0", "-tr",
                    "nnUNetTrainer_1epoch", "-device", "cpu"], env=env, check=True)
    return out / "results" / DATASET / "nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres"


if __name__ == "__main__":
    root = Path(sys.argv[1]).resolve()
    if "nnUNet_raw" not in os.environ:  # nnunetv2 reads its folders from the environment when imported
        os.environ.update(nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "preprocessed"),
                          nnUNet_results=str(root / "results"), nnUNet_def_n_proc="1")
    print(main(root))
