"""Fine-tuning in 1 vs N processes (DDP; gloo on the CPU, NCCL on GPUs): wall time and the version's Dice.

Each run is ``medvision finetune ... [--nproc N]`` as a fresh process, on the same phantom case store
and the same small UNet bundle. On a machine with 2 CPU cores, 2 processes share those cores: the
figure shows that the group trains correctly (same base Dice, comparable best Dice), not a speed-up;
a speed-up needs a core (or a GPU) per process. Run:

    .venv/bin/python benchmarks/finetune_ddp.py [--nproc 2] [--epochs 2] [--device cpu]
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

ROOT = Path(__file__).resolve().parents[1]


def run(cases: Path, model: Path, out: Path, epochs: int, device: str, nproc: int) -> tuple[float, dict]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "napari_medvision.cli", "finetune", "--model", str(model),
                             "--cases", str(cases), "--output", str(out), "--epochs", str(epochs), "--device", device,
                             "--validation-cases", "case_3", "--nproc", str(nproc), "--json"],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"})
    if result.returncode:
        sys.exit(f"nproc {nproc} failed: {result.stderr.strip().splitlines()[-1]}")
    return time.perf_counter() - start, json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.bundles import unet_bundle
    from tests.core.test_finetune import make_store

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_store(tmp / "cases", [1, 2, 3, 4, 5])
        model = unet_bundle(tmp / "base")
        rows = [(n, *run(tmp / "cases", model, tmp / f"v{n}", args.epochs, args.device, n))
                for n in sorted({1, args.nproc})]
    print(f"{os.cpu_count()} CPU cores; device {args.device}; {args.epochs} epochs; 4 training cases, 1 validation")
    print(f"{'processes':>9} {'wall s':>8} {'train s':>8} {'base Dice':>10} {'best Dice':>10}")
    for n, wall, summary in rows:
        print(f"{n:>9} {wall:8.1f} {summary['seconds']:8.1f} {summary['base_dice']:>10} {summary['best_dice']:>10}")
    (_, wall1, one), (_, wall_n, many) = rows[0], rows[-1]
    print(f"wall ratio {args.nproc} / 1 processes: {wall_n / wall1:.2f}; training-loop ratio "
          f"{many['seconds'] / max(one['seconds'], 1e-9):.2f}; best Dice difference "
          f"{(many['best_dice'] or 0) - (one['best_dice'] or 0):+.4f}")
    if (os.cpu_count() or 1) < 2 * args.nproc:
        print("note: fewer than 2 cores per process here: this shows correctness, not a speed-up")


if __name__ == "__main__":
    main()
