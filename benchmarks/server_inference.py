"""The shipped ``ct_organs_unet`` on a MONAI Label server (monaibundle app) vs on this computer.

Both warm (one run first), best of ``--repeats``; "server" is the whole round trip the dock pays
(NIfTI upload, the app's own pre/post-processing, the mask back laid onto the study's grid). Prints
the ratio server / local and how many voxels the two masks share. With no ``--url`` a server is
started on a free loopback port as the tests do (needs ``bash scripts/setup_monailabel.sh``). Run:

    .venv/bin/python benchmarks/server_inference.py [--url http://127.0.0.1:8000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = [(20, 48, 48), (40, 96, 96)]


def best(job_factory, repeats: int) -> tuple[float, object]:
    from napari_medvision.core.backend import drive

    result, times = None, []
    for _ in range(repeats):
        start = time.perf_counter()
        result = drive(job_factory())
        times.append(time.perf_counter() - start)
    return min(times), result


@contextlib.contextmanager
def server(url: str | None):
    if url:
        yield url
        return
    import shutil

    import napari_medvision
    from tests.monailabel_server import BUNDLE_APP, BUNDLE_CONF, SAMPLE_BUNDLE, _server

    bundle = Path(napari_medvision.__file__).parent / "sample_models" / SAMPLE_BUNDLE
    with tempfile.TemporaryDirectory() as work, \
            _server(Path(work), auth=False, app=BUNDLE_APP, conf=BUNDLE_CONF,
                    prepare=lambda app: shutil.copytree(bundle, app / "model" / SAMPLE_BUNDLE)) as (started, _):
        yield started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server with ct_organs_unet (default: start one)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import numpy as np

    from napari_medvision.core.backend import InProcessBackend
    from napari_medvision.core.models import list_models
    from napari_medvision.core.phantom import generate_phantom
    from napari_medvision.core.remote.backend import MonaiLabelBackend

    bundle = next(model for model in list_models() if model.name == "ct_organs_unet")
    local = InProcessBackend()
    with server(args.url) as url:
        remote = MonaiLabelBackend(url)
        (served,) = [model for model in remote.list_models() if model.name == "ct_organs_unet"]
        print(f"server {url}; best of {args.repeats}, warm")
        print(f"{'shape':>14} {'local s':>9} {'server s':>9} {'server/local':>13} {'same voxels':>12}")
        for shape in SHAPES:
            image = generate_phantom(4, shape=shape, spacing=(6.0 * 48 / shape[1], 6.0 * 48 / shape[1], 10.0)).image
            best(lambda: local.run_model(bundle, image), 1)
            best(lambda: remote.run_model(served, image), 1)
            here_s, here = best(lambda: local.run_model(bundle, image), args.repeats)
            there_s, there = best(lambda: remote.run_model(served, image), args.repeats)
            same = float(np.mean(here.labels.array == there.labels.array))
            print(f"{'x'.join(map(str, shape)):>14} {here_s:9.2f} {there_s:9.2f} {there_s / here_s:13.2f} {same:12.4f}")


if __name__ == "__main__":
    main()
