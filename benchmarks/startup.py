"""Start-up time of the light commands: ``medvision --help``, ``info`` on a NIfTI file, ``models``
(first with no trust verdicts remembered, then as every later listing runs).

Each command runs as the ``medvision`` console script runs it, in a fresh interpreter, ``--repeat``
times after one warm-up run (page cache); the table gives the median wall time, which heavy
packages (torch, MONAI, napari) it loaded, and, with ``--before REV``, the same for the source tree
of that git revision and the ratio. The last row is what importing torch and MONAI alone costs (what
every command paid while they loaded at import). Goal: ``info`` under 1.5 s. Run:

    .venv/bin/python benchmarks/startup.py [--before REV] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "monai", "napari")
_RUN = """
import json, sys
from napari_medvision.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps([code, sorted({m.split(".")[0] for m in sys.modules} & %r)]), file=sys.stderr)
""" % set(HEAVY)
GOAL_S = 1.5


def timed(code: str, args: list[str], tree: Path, cwd: Path, repeat: int, forget: bool = False) -> tuple[float, list[str]]:
    """Median wall seconds of ``python -c CODE ARGS`` with ``tree/src`` first on the path, and the heavy
    packages the last run loaded. The runs share a cache folder of their own (trust verdicts), emptied
    before each run when ``forget``."""
    cache = cwd / f"cache-{tree.name}"
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "MEDVISION_CACHE": str(cache)}
    times, heavy = [], []
    for run in range(repeat + 1):
        if forget:
            shutil.rmtree(cache, ignore_errors=True)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True,
                                text=True)
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"{args} failed in {tree}: {result.stderr.strip()[-500:]}")
        if run:
            times.append(elapsed)
        last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
        heavy = json.loads(last)[1] if last.startswith("[") else []
    return statistics.median(times), heavy


def write_study(folder: Path) -> Path:
    """A 128 x 128 x 64 CT-sized NIfTI file (int16 noise, 2.8 x 2.8 x 5 mm)."""
    import numpy as np
    import SimpleITK as sitk

    array = np.random.default_rng(0).integers(-1000, 1500, size=(64, 128, 128)).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((2.8, 2.8, 5.0))
    path = folder / "ct.nii.gz"
    sitk.WriteImage(image, str(path))
    return path


def checkout(rev: str, folder: Path) -> Path:
    """The tracked files of ``rev`` (sources and sample models) extracted into ``folder``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="REV", help="git revision to compare with (e.g. main before a change)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="medvision-startup-"))
    study = write_study(work)
    rows = [("medvision --help", ["--help"], False), ("medvision info ct.nii.gz", ["info", str(study)], False),
            ("medvision models (first)", ["models"], True), ("medvision models", ["models"], False)]
    trees = {"after": ROOT}
    if args.before:
        trees = {"before": checkout(args.before, Path(tempfile.mkdtemp(prefix="medvision-before-"))), **trees}
    results = {name: [timed(_RUN, argv, tree, work, args.repeat, forget) for _, argv, forget in rows]
               for name, tree in trees.items()}
    reference, _ = timed("import torch, monai", [], ROOT, work, args.repeat)

    header = f"{'command':<28}" + "".join(f"{name + ' s':>10} {'loads':<20}" for name in trees)
    print(header + ("  ratio" if args.before else ""))
    for index, (label, _, _) in enumerate(rows):
        line = f"{label:<28}"
        for name in trees:
            seconds, heavy = results[name][index]
            line += f"{seconds:>10.2f} {','.join(heavy) or '-':<20}"
        if args.before:
            line += f"  {results['before'][index][0] / results['after'][index][0]:5.1f}x"
        print(line)
    print(f"{'(import torch, monai)':<28}{reference:>10.2f}")
    info_s = results["after"][1][0]
    print("('models (first)': nothing remembered, every bundle judged with MONAI; 'models': verdicts remembered)")
    print(f"\ngoal: info under {GOAL_S} s wall: {info_s:.2f} s, {'met' if info_s < GOAL_S else 'NOT met'} "
          f"(median of {args.repeat} runs; {os.cpu_count()} CPUs, shared with whatever else runs)")


if __name__ == "__main__":
    main()
