"""The Annotate dock's cost of computing a click in its worker process instead of the viewer's.

On a 128^3 float32 crop (8 MiB) with one sphere, a click's prompts segmented by the model-free
engine, per path, median of ``--clicks`` clicks after one not counted:

* ``in-process``: ``segment_job`` driven on this process's thread (the old path);
* ``worker, shared``: the dock's path, the image sent as ``transfer.Shared`` (written once per
  image; a click sends only its file's name);
* ``worker, copied``: the image packed afresh for every click (what the transfer did before).

Also the transfer alone (pack + unpack in this process, no worker) for each way of sending. Run:

    PYTHONPATH=src nice -n 10 .venv/bin/python benchmarks/annotate_clicks.py [--clicks 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def crop(n: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A noisy sphere in a 128^3 float32 volume, and a click inside it ``(1, 3)`` (z, y, x)."""
    rng = np.random.default_rng(0)
    grid = np.indices((n, n, n)).astype(np.float32)
    inside = ((grid - n / 2) ** 2).sum(0) < (n / 5) ** 2
    image = (rng.normal(0, 10, (n, n, n)) + 100 * inside).astype(np.float32)
    return image, np.array([[n // 2, n // 2, n // 2]])


def median_seconds(function, clicks: int) -> float:
    function()   # not counted: the first click maps the image, builds caches
    times = []
    for _ in range(clicks):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    from napari_medvision.core.backend import InProcessBackend, WorkerBackend, drive, transfer
    from napari_medvision.core.interactive import Prompts
    from napari_medvision.core.interactive.job import SEGMENT

    parser = argparse.ArgumentParser()
    parser.add_argument("--clicks", type=int, default=10)
    clicks = parser.parse_args().clicks
    image, click = crop()
    prompts, spacing = Prompts(click, np.zeros((0, 3), int)), (1.0, 1.0, 1.0)
    shared = transfer.Shared(image)

    folder = Path(tempfile.mkdtemp(prefix="medvision-bench-"))
    transfer_ms = {
        "shared": median_seconds(lambda: transfer.unpack(transfer.pack((shared, spacing, prompts), folder)),
                                 clicks * 5) * 1000,
        "copied": median_seconds(lambda: transfer.unpack(transfer.pack((image, spacing, prompts), folder)),
                                 clicks * 5) * 1000}
    transfer.remove_folder(folder)

    inprocess, worker = InProcessBackend(), WorkerBackend(warm=("napari_medvision.core.interactive.job",))
    start = time.perf_counter()
    drive(worker.run(SEGMENT, shared, spacing, prompts))
    started = time.perf_counter() - start
    seconds = {
        "in-process": median_seconds(lambda: drive(inprocess.run(SEGMENT, image, spacing, prompts)), clicks),
        "worker, shared": median_seconds(lambda: drive(worker.run(SEGMENT, shared, spacing, prompts)), clicks),
        "worker, copied": median_seconds(lambda: drive(worker.run(SEGMENT, image, spacing, prompts)), clicks)}
    worker.close()

    print(f"128^3 float32 crop ({image.nbytes / 2**20:.0f} MiB), one click; worker start + first click "
          f"{started:.1f} s (imports: numpy, SciPy, scikit-image)")
    print(f"transfer alone (pack + unpack, median): shared {transfer_ms['shared']:.2f} ms, "
          f"copied {transfer_ms['copied']:.2f} ms per click")
    print(f"{'path':<16}{'s per click':>12}{'x in-process':>14}")
    for path, value in seconds.items():
        print(f"{path:<16}{value:>12.3f}{value / seconds['in-process']:>14.2f}")


if __name__ == "__main__":
    main()
