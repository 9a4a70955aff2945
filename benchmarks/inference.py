"""Inference overhead and the faster CPU path.

Compares, on one network, study and window setting (the spleen bundle's UNet, 96³ windows,
4 per batch, overlap 0.5, Gaussian weighting):

* raw   — ``monai.inferers.sliding_window_inference`` on the already preprocessed tensor, with the
          bundle's network as is and with it in channels-last order (our CPU default);
* infer — ``medvision infer`` end to end in-process (read, build, preprocess, infer,
          postprocess, write), with each backend.

Each row runs in a fresh process so its peak memory (max RSS) is its own. Run:

    .venv/bin/python benchmarks/inference.py
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from _common import make_bundle, make_study  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_raw(bundle: Path, study: Path) -> dict:
    import torch
    from monai.inferers import sliding_window_inference

    from napari_medvision.core.inference.accelerate import channels_last
    from napari_medvision.core.inference.convert import to_metatensor
    from napari_medvision.core.io import read_volume
    from napari_medvision.core.models import load_bundle

    loaded = load_bundle(bundle)
    model = loaded.build(torch.device("cpu"))
    data = model.preprocessing({"image": to_metatensor(read_volume(study))})
    inputs = data["image"].as_tensor()[None]
    inferer = model.inferer
    record, maps = {"shape": list(inputs.shape[2:])}, {}
    # plain: the bundle's network as MONAI runs it; channels-last: the same compute as `medvision infer`'s
    # torch default on the CPU, so "infer / that" is the plumbing alone.
    plain = copy.deepcopy(model.network)  # channels_last converts its network in place
    for name, network in (("seconds", plain), ("seconds_cl", channels_last(model.network))):
        times = []
        with torch.no_grad():
            for _ in range(3):
                start = time.perf_counter()
                logits = sliding_window_inference(inputs, inferer.roi_size, inferer.sw_batch_size, network,
                                                  overlap=inferer.overlap, mode="gaussian")
                times.append(time.perf_counter() - start)
        record[name] = min(times)
        maps[name] = logits.argmax(dim=1).numpy()
    record["dice_cl"] = dice(maps["seconds_cl"], maps["seconds"])
    return record


def run_infer(bundle: Path, study: Path, output: Path, backend: str, repeats: int) -> dict:
    from napari_medvision import cli
    from napari_medvision.core.inference import segment  # noqa: F401 - imports outside the timing

    times = []
    for _ in range(repeats):
        from napari_medvision.core.models import cache

        cache.clear()  # every repeat builds the model again: end to end means end to end
        start = time.perf_counter()
        code = cli.main(["infer", "--model", str(bundle), "--input", str(study), "--output", str(output),
                         "--device", "cpu", "--backend", backend, "--json"])
        times.append(time.perf_counter() - start)
        assert code == 0
    return {"seconds": min(times[1:]) if len(times) > 1 else times[0], "first": times[0]}


def child(args) -> None:
    if args.kind == "raw":
        record = run_raw(args.bundle, args.study)
    else:
        record = run_infer(args.bundle, args.study, args.output, args.kind, args.repeats)
    record["peak_mb"] = peak_mb()
    print("RESULT " + json.dumps(record))


def spawn(kind: str, bundle: Path, study: Path, output: Path | None = None, repeats: int = 4) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--bundle", str(bundle), "--study", str(study),
               "--repeats", str(repeats)]
    if output:
        command += ["--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", check=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Dice over the label values present in either map (1.0 when both are empty)."""
    values = [v for v in np.union1d(np.unique(a), np.unique(b)) if v != 0]
    if not values:
        return 1.0
    return float(np.mean([2 * np.logical_and(a == v, b == v).sum() / ((a == v).sum() + (b == v).sum())
                          for v in values]))


def main() -> None:
    from napari_medvision.core.models.bundle import SAMPLE_MODELS_DIR

    work = Path(tempfile.mkdtemp(prefix="medvision-bench-"))
    bundle, source = make_bundle(work / "spleen")
    table(work, bundle, f"{source}, random weights (seed 0)", make_study(work / "study.nii.gz"))
    unet = SAMPLE_MODELS_DIR / "ct_organs_unet"
    if (unet / "models" / "model.pt").is_file():
        print()
        table(work, unet, "the trained sample U-Net (ct_organs_unet)",
              make_study(work / "phantom.nii.gz", shape=(64, 128, 128), spacing=(2.8, 2.8, 5.0)))


def table(work: Path, bundle: Path, source: str, study: Path) -> None:
    from napari_medvision.core.io import read_volume

    print(f"network: {source}; study: {read_volume(study).shape} (z, y, x) phantom")
    raw = spawn("raw", bundle, study)
    print(f"preprocessed grid (x, y, z): {raw['shape']}")
    rows = [("raw sliding_window_inference", raw, None)]
    labels = {}
    for backend in ("torch", "openvino", "onnxruntime"):
        out = work / f"labels_{bundle.name}_{backend}.nii.gz"
        try:
            record = spawn(backend, bundle, study, out)
        except subprocess.CalledProcessError as exc:
            print(f"{backend}: failed ({exc.stderr.strip().splitlines()[-1]})")
            continue
        labels[backend] = read_volume(out).array
        rows.append((f"medvision infer --backend {backend}", record, backend))
    print(f"{'path':<38}{'seconds':>9}{'1st run':>9}{'/ raw':>8}{'/ raw-cl':>10}{'peak MB':>9}{'Dice vs torch':>15}")
    rows.insert(1, ("raw, channels-last network", {"seconds": raw["seconds_cl"], "peak_mb": raw["peak_mb"]}, "cl"))
    for name, record, backend in rows:
        ratio = record["seconds"] / raw["seconds"]
        ratio_cl = record["seconds"] / raw["seconds_cl"]
        agreement = f"{dice(labels[backend], labels['torch']):.4f}" if backend in labels and "torch" in labels else ""
        agreement = f"{raw['dice_cl']:.4f}" if backend == "cl" else agreement
        first = f"{record['first']:.2f}" if "first" in record else ""
        print(f"{name:<38}{record['seconds']:>9.2f}{first:>9}{ratio:>8.2f}{ratio_cl:>10.2f}{record['peak_mb']:>9.0f}"
              f"{agreement:>15}")
    print("/ raw: end-to-end wall time over raw sliding-window time on the bundle's network as MONAI runs it")
    print("       (the overhead ratio; goal for torch: <= 1.15).")
    print("/ raw-cl: over raw sliding-window time with the compute `medvision infer` uses by default on the CPU")
    print("       (channels-last network): the cost of reading, resampling, postprocessing and writing alone.")
    print("seconds: best of 3 warm runs (model rebuilt each time, ONNX export cached); raw: best of 3;")
    print("1st run: includes the one-off ONNX export.")
    print("Dice vs torch: mean Dice over labels of each backend's label map against torch's; for the")
    print("       channels-last raw row, its argmax map against the plain network's.")

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child")
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--study", type=Path)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--repeats", type=int, default=2)
    arguments = parser.parse_args()
    if arguments.child:
        arguments.kind = arguments.child
        child(arguments)
    else:
        main()
