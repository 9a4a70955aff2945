"""Issue 16's goals, measured against MONAI's own bundle runner on the same bundle, weights and image.

Every run is a whole process (``medvision infer``, ``python -m monai.bundle run``) at ``nice 10``;
its wall time and the peak RSS of its process tree (sampled every 20 ms) are compared:

1. many classes: a SegResNet bundle with ``--classes`` (105) output channels and random weights, on a
   phantom CT of 300x300x250 voxels: peak RSS <= 0.5x MONAI's, wall time <= 0.8x, label maps
   agreeing on >= 99.5 % of voxels.
2. cold run: the public spleen bundle's configs (random weights) on a small phantom CT, each run a
   fresh interpreter: wall time <= 0.6x MONAI's runner.
4. two classes: the spleen UNet on a 512x512x300 phantom CT, in one process: memory used by the
   segmentation above what the process held before it (model built, image read) <= 4x the image
   as float32.

(Goal 3, many studies in one process, is measured by ``benchmarks/batch.py``.) Run:

    .venv/bin/python benchmarks/performance.py [--goals 1 2 4] [--repeat 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from _common import make_bundle  # noqa: E402
from _processes import medvision, medvision_env, monai_runner, run, runner_env  # noqa: E402

RAS = np.diag([-1.0, -1.0, 1.0])  # LPS direction of an image MONAI's Orientationd(RAS) leaves as it is
RUNNER_ENV: dict = {}
GOALS = {"memory": 0.5, "time": 0.8, "agreement": 0.995, "cold": 0.6, "two_class": 4.0}


def many_class_config(classes: int, pixdim: float) -> dict:
    """A runnable bundle config (MONAI's runner and ours) of a SegResNet with ``classes`` outputs."""
    return {
        "imports": ["$import numpy"],
        "bundle_root": ".",
        "output_dir": "$@bundle_root + '/eval'",
        "datalist": [],
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": {"_target_": "SegResNet", "spatial_dims": 3, "in_channels": 1, "out_channels": classes,
                        "init_filters": 16, "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1]},
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": "image"},
            {"_target_": "EnsureChannelFirstd", "keys": "image"},
            {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": "image", "pixdim": [pixdim] * 3, "mode": "bilinear"},
            {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -1000, "a_max": 1000, "b_min": 0,
             "b_max": 1, "clip": True},
            {"_target_": "EnsureTyped", "keys": "image"}]},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]",
                    "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False,
                       "num_workers": 0},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [96, 96, 96], "sw_batch_size": 1,
                    "overlap": 0.25, "mode": "gaussian"},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
             "nearest_interp": False, "to_tensor": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "seg",
             "output_dtype": "$numpy.uint8", "separate_folder": False, "resample": False}]},
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader",
                      "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing"},
        "checkpointloader": {"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'",
                             "load_dict": {"model": "@network"}},
        "initialize": ["$@checkpointloader(@evaluator)"],
        "run": ["$@evaluator.run()"],
    }


def many_class_bundle(folder: Path, classes: int, pixdim: float) -> Path:
    import torch
    from monai.bundle import ConfigParser

    config = many_class_config(classes, pixdim)
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(exist_ok=True)
    (folder / "configs" / "inference.json").write_text(json.dumps(config, indent=1))
    channels = {str(k): ("background" if k == 0 else f"structure_{k}") for k in range(classes)}
    (folder / "configs" / "metadata.json").write_text(json.dumps({
        "name": f"{classes}-class SegResNet (random weights)",
        "network_data_format": {"outputs": {"pred": {"type": "image", "channel_def": channels}}}}))
    torch.manual_seed(0)
    network = ConfigParser(config).get_parsed_content("network_def")
    torch.save(network.state_dict(), folder / "models" / "model.pt")
    return folder


def phantom_ct(path: Path, shape_zyx, spacing_xyz, seed: int = 7) -> Path:
    """A phantom torso CT written once (kept when ``path`` exists), RAS-aligned (see :data:`RAS`)."""
    if path.is_file():
        return path
    from napari_medvision.core.io import write_volume
    from napari_medvision.core.phantom import generate_phantom

    write_volume(generate_phantom(seed, shape=shape_zyx, spacing=spacing_xyz, direction=RAS).image, path)
    return path


def agreement(a: Path, b: Path) -> float:
    """Fraction of voxels with the same label in two label maps of one grid (geometry checked too)."""
    from napari_medvision.core.io import read_volume
    from napari_medvision.core.volume import geometry_differences

    first, second = read_volume(a), read_volume(b)
    differences = geometry_differences(first, second)
    if differences or first.shape != second.shape:
        raise SystemExit(f"label maps on different grids: {differences or (first.shape, second.shape)}")
    return float(np.mean(first.array.astype(np.int32) == second.array.astype(np.int32)))


def monai_output(folder: Path) -> Path:
    return next(p for p in sorted(folder.rglob("*.nii.gz")))


def compare(label: str, bundle: Path, image: Path, work: Path, repeat: int, extra: list[str],
            monai: bool = True) -> dict:
    """``repeat`` runs of each runtime, alternating; medians of wall time and peak RSS, and label agreement.

    A MONAI run the kernel kills for memory is recorded as ``monai_killed_mb`` (its peak until then, a
    lower bound of what it needs) and ``monai_killed_s``; ``monai`` False runs medvision alone."""
    ours, theirs, record = [], [], {}
    for number in range(repeat):
        out = work / f"{label}_ours.nii.gz"
        ours.append(run(medvision(["infer", "--model", str(bundle), "--input", str(image), "--output", str(out),
                                   "--json", *extra]), env=medvision_env()))
        print(f"  {label} run {number + 1}: medvision {ours[-1].seconds:.1f} s ({ours[-1].cpu_s:.1f} s CPU) "
              f"{ours[-1].peak_mb:.0f} MB; load {os.getloadavg()[0]:.1f}", flush=True)
        if not monai:
            continue
        monai_dir = work / f"{label}_monai_{number}"
        try:
            theirs.append(run(monai_runner(bundle, image, monai_dir), env=RUNNER_ENV))
        except MemoryError as exc:
            record.update(monai_killed_mb=exc.args[1], monai_killed_s=exc.args[2])
            print(f"  {label} run {number + 1}: MONAI's runner killed for memory at {exc.args[1]:.0f} MB "
                  f"after {exc.args[2]:.0f} s", flush=True)
            continue
        print(f"  {label} run {number + 1}: MONAI {theirs[-1].seconds:.1f} s ({theirs[-1].cpu_s:.1f} s CPU) "
              f"{theirs[-1].peak_mb:.0f} MB", flush=True)
    record.update({"ours_s": [r.seconds for r in ours], "ours_cpu_s": [r.cpu_s for r in ours],
                   "ours_mb": [r.peak_mb for r in ours]})
    if theirs:
        record.update({"monai_s": [r.seconds for r in theirs], "monai_cpu_s": [r.cpu_s for r in theirs],
                       "monai_mb": [r.peak_mb for r in theirs], "agreement": agreement(out, monai_output(monai_dir))})
    return record


def cpu_ratio(r: dict) -> float:
    """Median CPU seconds over MONAI's: less sensitive than wall time to other processes on the machine."""
    return statistics.median(r["ours_cpu_s"]) / statistics.median(r["monai_cpu_s"])


def verdict(value: float, goal: float, at_least: bool = False) -> str:
    return "met" if (value >= goal if at_least else value <= goal) else "NOT met"


def goal_many_classes(work: Path, args) -> None:
    bundle = many_class_bundle(work / f"segresnet{args.classes}", args.classes, args.pixdim)
    image = phantom_ct(work / "ct_300x300x250.nii.gz", (250, 300, 300), (1.2, 1.2, 1.5))
    print(f"goal 1: {args.classes}-class SegResNet at {args.pixdim} mm, CT 300x300x250 at 1.2x1.2x1.5 mm (CPU)")
    import psutil

    needed = args.classes * 300 * 300 * 250 * 4 * 1.3 / 2**30  # MONAI resamples every class to the CT's grid
    available = psutil.virtual_memory().available / 2**30
    if available < needed + 1.5 and not args.no_monai_many:
        print(f"  warning: MONAI's runner needs about {needed:.1f} GB; {available:.1f} GB are free "
              "(it is the kernel's first choice if memory runs out)")
    r = compare("many", bundle, image, work, args.repeat, ["--device", "cpu"], monai=not args.no_monai_many)
    if "monai_mb" not in r:
        killed = r.get("monai_killed_mb", args.monai_killed_mb)
        if killed:
            bound = statistics.median(r["ours_mb"]) / killed
            print(f"  MONAI's runner could not finish here: killed for memory at {killed:.0f} MB; peak RSS ratio "
                  f"< {bound:.2f} (goal <= {GOALS['memory']}): {verdict(bound, GOALS['memory'])}; "
                  "wall time and agreement: no MONAI result to compare")
        print("  raw: " + json.dumps(r))
        return
    memory = statistics.median(r["ours_mb"]) / statistics.median(r["monai_mb"])
    time = statistics.median(r["ours_s"]) / statistics.median(r["monai_s"])
    print(f"  peak RSS ratio {memory:.2f} (goal <= {GOALS['memory']}): {verdict(memory, GOALS['memory'])}")
    print(f"  wall time ratio {time:.2f} (goal <= {GOALS['time']}): {verdict(time, GOALS['time'])}; "
          f"CPU time ratio {cpu_ratio(r):.2f}")
    print(f"  label agreement {r['agreement'] * 100:.3f} % (goal >= {GOALS['agreement'] * 100} %): "
          f"{verdict(r['agreement'], GOALS['agreement'], at_least=True)}")
    print("  raw: " + json.dumps({k: [round(x, 1) for x in v] if isinstance(v, list) else v for k, v in r.items()}))


def goal_cold_run(work: Path, args) -> None:
    bundle, source = make_bundle(work / "spleen")
    image = phantom_ct(work / "ct_small.nii.gz", (64, 160, 160), (2.5, 2.5, 3.0))
    print(f"goal 2: cold CLI run, {source}, random weights, CT 160x160x64 at 2.5x2.5x3 mm (CPU)")
    # one run first, not counted: it makes the one-off caches (--backend auto's check, the ONNX export)
    run(medvision(["infer", "--model", str(bundle), "--input", str(image), "--json"]), env=medvision_env())
    r = compare("cold", bundle, image, work, args.repeat, [])
    ratio = statistics.median(r["ours_s"]) / statistics.median(r["monai_s"])
    print(f"  wall time ratio {ratio:.3f} (goal <= {GOALS['cold']}): {verdict(ratio, GOALS['cold'])}; "
          f"CPU time ratio {cpu_ratio(r):.2f} ({verdict(cpu_ratio(r), GOALS['cold'])})")
    pairs = [f"{a / b:.2f}" for a, b in zip(r["ours_s"], r["monai_s"])]
    print(f"  per-run wall ratios (each run beside the MONAI run after it): {', '.join(pairs)}")
    print(f"  label agreement {r['agreement'] * 100:.3f} % (MONAI's runner blends windows evenly, ours Gaussian)")
    print("  raw: " + json.dumps({k: [round(x, 1) for x in v] if isinstance(v, list) else v for k, v in r.items()}))


def goal_two_class_memory(work: Path, args) -> None:
    bundle, _ = make_bundle(work / "spleen")
    image = phantom_ct(work / "ct_512x512x300.nii.gz", (300, 512, 512), (0.8, 0.8, 1.5))
    print("goal 4: spleen UNet (2 classes), CT 512x512x300 at 0.8x0.8x1.5 mm, overlap 0.25 (CPU)")
    done = subprocess.run(["nice", "-n", "10", sys.executable, str(Path(__file__).resolve().parent / "_memory.py"),
                           str(bundle), str(image)], capture_output=True, text=True,
                          env={**os.environ, **medvision_env()})
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"memory run failed: {done.stderr.strip()[-800:]}")
    r = json.loads(line[len("RESULT "):])
    ratio = r["working_mb"] / r["input_float32_mb"]
    print(f"  working memory {r['working_mb']:.0f} MB over a {r['input_float32_mb']:.0f} MB float32 input: "
          f"{ratio:.2f}x (goal <= {GOALS['two_class']}x): {verdict(ratio, GOALS['two_class'])}")
    print("  raw: " + json.dumps(r))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goals", nargs="+", type=int, default=[1, 2, 4], choices=(1, 2, 4))
    parser.add_argument("--repeat", type=int, default=2, help="runs of each runtime per goal (medians)")
    parser.add_argument("--classes", type=int, default=105)
    parser.add_argument("--pixdim", type=float, default=3.0, help="the many-class model's voxel size, mm")
    parser.add_argument("--work", type=Path, help="folder kept between runs (phantoms are written once)")
    parser.add_argument("--no-monai-many", action="store_true",
                        help="goal 1: run medvision alone (MONAI's runner needs more memory than some machines have)")
    parser.add_argument("--monai-killed-mb", type=float,
                        help="goal 1 with --no-monai-many: the peak at which MONAI's runner was killed before")
    parser.add_argument("--runner-deps", type=Path, help="folder holding ignite and fire for MONAI's runner")
    args = parser.parse_args()
    RUNNER_ENV.update(runner_env(args.runner_deps))
    work = args.work or Path(tempfile.mkdtemp(prefix="medvision-perf-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at the start); work folder {work}")
    for goal, function in ((1, goal_many_classes), (2, goal_cold_run), (4, goal_two_class_memory)):
        if goal in args.goals:
            function(work, args)
    print(f"load average {os.getloadavg()[0]:.1f} at the end (other processes share these CPUs: times are noisy)")


if __name__ == "__main__":
    main()
