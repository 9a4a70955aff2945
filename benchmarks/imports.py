"""Start-up imports of ``medvision infer`` and of the viewer's worker, with and without deferral.

Each measurement is a fresh interpreter importing what the command imports before its first window
(torch, MONAI's bundle and data packages, our segmentation engine), or running the worker's warm-up
(``worker_main.ENGINES``: the engines' imports and MONAI's component scan), once as MONAI does it
and once inside :func:`napari_medvision.core.deferred_imports.deferred`, alternating. Wall and CPU
seconds (user + system of the process) are printed, with the ratios of the medians, and which of
the heavy optional packages (:data:`HEAVY`) ended up imported (their code run). Run:

    PYTHONPATH=src .venv/bin/python benchmarks/imports.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_PROBE = """
import contextlib, json, resource, sys, time
start = time.perf_counter()
from napari_medvision.core.deferred_imports import deferred
from napari_medvision.core._lazy_modules import pending
with deferred() if {deferred} else contextlib.nullcontext():
    {work}
usage = resource.getrusage(resource.RUSAGE_SELF)
ran = [n for n in {heavy!r} if n in sys.modules and not pending(sys.modules[n])]
print(json.dumps({{"wall": time.perf_counter() - start, "cpu": usage.ru_utime + usage.ru_stime, "imported": ran}}))
"""
HEAVY = ("torchvision", "torch._dynamo", "matplotlib.pyplot", "pandas", "sklearn", "skimage", "huggingface_hub",
         "scipy.signal", "scipy.ndimage")
WORK = {
    "infer imports": "import torch, monai.bundle, monai.data; import napari_medvision.core.inference.segmentation",
    "worker warm-up": "from napari_medvision.core.backend.worker_main import ENGINES, _warm_up; _warm_up(ENGINES)",
}


def measure(work: str, deferred: bool) -> dict:
    done = subprocess.run([sys.executable, "-c", _PROBE.format(deferred=deferred, work=work, heavy=HEAVY)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=600)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    for label, work in WORK.items():
        runs = {False: [], True: []}
        for _ in range(args.repeat):
            for deferred in (False, True):
                runs[deferred].append(measure(work, deferred))
        for deferred in (False, True):
            r = runs[deferred]
            print(f"  {label:<15} {'deferred' if deferred else 'as MONAI':<9} wall "
                  + " / ".join(f"{x['wall']:.2f}" for x in r) + " s, CPU " + " / ".join(f"{x['cpu']:.2f}" for x in r)
                  + f" s; imported: {', '.join(r[-1]['imported']) or 'none of them'}")
        wall = statistics.median(x["wall"] for x in runs[True]) / statistics.median(x["wall"] for x in runs[False])
        cpu = statistics.median(x["cpu"] for x in runs[True]) / statistics.median(x["cpu"] for x in runs[False])
        print(f"  {label}: deferred / as MONAI, medians: wall {wall:.2f}, CPU {cpu:.2f}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
