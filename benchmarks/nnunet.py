"""``medvision infer`` against ``nnUNetv2_predict`` on the same nnU-Net v2 model and image, end to end.

The model is planned by nnU-Net on phantom cases and saved with random weights by its trainer
(tests/core/nnunet_builder.py); both commands run as fresh processes on the CPU with nnU-Net's
defaults (mirroring on), the same folds, one image. Prints the wall times, their ratio
(goal: medvision / nnUNetv2_predict <= 1.0) and the label agreement. Run:

    .venv/bin/python benchmarks/nnunet.py [--full-width] [--folds 0 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
BUILDER = ROOT / "tests" / "core" / "nnunet_builder.py"
DATASET, MODEL = "Dataset001_Phantom", "nnUNetTrainer__nnUNetPlans__3d_fullres"


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, encoding="utf-8", errors="replace")
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed:\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-width", action="store_true", help="nnU-Net's planned widths (32 features up)")
    parser.add_argument("--folds", nargs="+", default=["0"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from napari_medvision.core.phantom import generate_phantom, write_phantom_dataset

    bindir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="bench-nnunet-") as tmp:
        tmp = Path(tmp)
        write_phantom_dataset(tmp / "raw" / DATASET, cases=3, seed=0, shape=(32, 64, 64), spacing=(3.0, 3.0, 4.0),
                              max_lesions=0)
        env = dict(os.environ, nnUNet_raw=str(tmp / "raw"), nnUNet_preprocessed=str(tmp / "pre"),
                   nnUNet_results=str(tmp / "results"))
        subprocess.run([sys.executable, str(BUILDER), *args.folds] + (["--full-width"] if args.full_width else []),
                       env=env, check=True, capture_output=True)
        model = tmp / "results" / DATASET / MODEL
        case = generate_phantom(7, shape=(40, 80, 88), spacing=(2.6, 2.4, 3.5), direction=np.diag([-1.0, 1.0, 1.0]))
        (tmp / "in").mkdir()
        study = tmp / "in" / "case_0000.nii.gz"
        sitk.WriteImage(case.image.to_sitk(), str(study))
        ours = [sys.executable, "-m", "napari_medvision.cli", "infer", "--model", str(model), "--input", str(study),
                "--output", str(tmp / "ours.nii.gz"), "--device", "cpu", "--json", "--folds", *args.folds]
        theirs = [str(bindir / "nnUNetv2_predict"), "-i", str(tmp / "in"), "-o", str(tmp / "theirs"), "-d", "1",
                  "-c", "3d_fullres", "-f", *args.folds, "-device", "cpu", "-npp", "1", "-nps", "1",
                  "--disable_progress_bar"]
        times = {"medvision infer": [], "nnUNetv2_predict": []}
        for _ in range(args.repeats):  # alternate, so a busy machine hurts both alike
            times["medvision infer"].append(timed(ours, env))
            times["nnUNetv2_predict"].append(timed(theirs, env))
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp / "ours.nii.gz")))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp / "theirs" / "case.nii.gz")))
    best = {k: min(v) for k, v in times.items()}
    print(f"nnU-Net 3d_fullres ({'full' if args.full_width else 'narrow'} width), folds {' '.join(args.folds)}, "
          f"mirroring on, image {case.image.shape} (z, y, x), CPU, best of {args.repeats}")
    print(f"{'command':<20} {'seconds':>9}")
    for name, seconds in best.items():
        print(f"{name:<20} {seconds:9.2f}")
    print(f"ratio medvision / nnUNetv2_predict: {best['medvision infer'] / best['nnUNetv2_predict']:.2f} (goal <= 1.0)")
    print(f"identical voxels: {np.mean(a == b):.6f}")
    print(json.dumps({"seconds": best, "identical": float(np.mean(a == b))}))


if __name__ == "__main__":
    main()
