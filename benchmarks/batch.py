"""Many studies in one process (performance issue, goal 3): per-study time of a batch vs the network's own.

For each study of a folder, "network" is the sliding window alone (the bundle's inferer on the already
preprocessed tensor, the network as the batch runs it); "batch" is the wall time that study takes inside
``run_batch`` (from its start to the next study's start: read wait, preprocessing, window, postprocessing,
and the write of the previous study, which overlaps). The model is built before both, once.
Goal: batch <= 1.3 x network per study. Run:

    .venv/bin/python benchmarks/batch.py [--studies 4] [--shape 48 128 128]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import make_bundle, make_study  # noqa: E402

GOAL = 1.3


def network_seconds(bundle, study: Path, repeats: int = 1) -> float:
    """The window alone: the cached model's inferer on the preprocessed study (best of ``repeats``)."""
    import torch

    from napari_medvision.core.inference.accelerate import channels_last
    from napari_medvision.core.inference.convert import to_metatensor
    from napari_medvision.core.io import read_volume
    from napari_medvision.core.models.cache import loaded_model

    model = loaded_model(bundle, torch.device("cpu"))
    image = model.preprocessing({"image": to_metatensor(read_volume(study))})["image"].as_tensor()[None]
    network = channels_last(model.network)
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            model.inferer(image, network)
            best = min(best, time.perf_counter() - start)
    return best


def batch_seconds(bundle, folder: Path, out: Path) -> dict[str, float]:
    """Wall seconds of each study inside one batch run (start of a study to the start of the next)."""
    from napari_medvision.core.inference.batch import find_studies, run_batch

    marks: list[tuple[str, float]] = []
    job = run_batch(bundle, find_studies(folder), out, options={"device": "cpu"})
    while True:
        try:
            step = next(job)
        except StopIteration:
            break
        if step.message.startswith("study "):
            marks.append((step.message.split(": ", 1)[1], time.perf_counter()))
    end = time.perf_counter()
    return {name: (marks[k + 1][1] if k + 1 < len(marks) else end) - t for k, (name, t) in enumerate(marks)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=4)
    parser.add_argument("--shape", type=int, nargs=3, default=(48, 128, 128), metavar=("Z", "Y", "X"))
    args = parser.parse_args()

    import torch

    from napari_medvision.core.models import load_bundle
    from napari_medvision.core.models.cache import loaded_model

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle_path, source = make_bundle(tmp / "bundle")
        bundle = load_bundle(bundle_path)
        folder = tmp / "studies"
        folder.mkdir()
        studies = [make_study(folder / f"study_{k:02d}.nii.gz", shape=tuple(args.shape))
                   for k in range(args.studies)]
        loaded_model(bundle, torch.device("cpu"))          # built once, before both measurements
        network_seconds(bundle, studies[0])                   # warm-up (first-call allocations)
        net = {s.name.removesuffix(".nii.gz"): network_seconds(bundle, s) for s in studies}
        wall = batch_seconds(bundle, folder, tmp / "out")
    print(f"bundle: {source}; {args.studies} studies of {'x'.join(map(str, args.shape))} voxels; "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'study':<12} {'network s':>10} {'batch s':>10} {'ratio':>7}")
    for name in net:
        print(f"{name:<12} {net[name]:10.2f} {wall[name]:10.2f} {wall[name] / net[name]:7.2f}")
    ratio = sum(wall.values()) / sum(net.values())
    print(f"{'all':<12} {sum(net.values()):10.2f} {sum(wall.values()):10.2f} {ratio:7.2f}")
    print(f"goal 3 (per-study time <= {GOAL}x the network's): {'met' if ratio <= GOAL else 'not met'} "
          f"({ratio:.2f}x)")


if __name__ == "__main__":
    main()
