"""Goal 4's measurement in one process: memory a segmentation uses above what the process held before.

The model is built and run once on a small crop first (so its weights, the window weight map and
the CPU kernels' buffers are in place), then the process's RSS is taken and sampled every 5 ms
while the whole image is segmented. Prints one ``RESULT {json}`` line. Run by ``performance.py``::

    python benchmarks/_memory.py BUNDLE IMAGE [OVERLAP [WINDOWS_PER_BATCH]]
"""

from __future__ import annotations

import gc
import json
import sys
import threading

import psutil


def drain(engine):
    while True:
        try:
            next(engine)
        except StopIteration as stop:
            return stop.value


def main() -> None:
    from napari_medvision.core.inference import segment
    from napari_medvision.core.io import read_volume
    from napari_medvision.core.models import load_bundle

    bundle, volume = load_bundle(sys.argv[1]), read_volume(sys.argv[2])
    overlap = float(sys.argv[3]) if len(sys.argv) > 3 else 0.25
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else None  # None: the bundle's
    from napari_medvision.core.volume import Volume

    crop = Volume(volume.array[:48, :160, :160].copy(), volume.spacing, volume.origin, volume.direction)
    drain(segment(bundle, crop, device="cpu", overlap=overlap, sw_batch_size=batch))
    del crop
    gc.collect()
    process = psutil.Process()
    before = process.memory_info().rss
    peak = [before]
    stop = threading.Event()

    def watch():
        while not stop.wait(0.005):
            peak[0] = max(peak[0], process.memory_info().rss)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    result = drain(segment(bundle, volume, device="cpu", overlap=overlap, sw_batch_size=batch))
    stop.set()
    watcher.join()
    input_mb = volume.array.size * 4 / 2**20
    print("RESULT " + json.dumps({"shape_zyx": list(volume.shape), "input_float32_mb": round(input_mb, 1),
                                  "rss_before_mb": round(before / 2**20), "peak_mb": round(peak[0] / 2**20),
                                  "working_mb": round((peak[0] - before) / 2**20),
                                  "labelled_voxels": int((result.labels.array > 0).sum()),
                                  "seconds": round(result.seconds, 1), "windows_per_batch": batch or "bundle's"}))


if __name__ == "__main__":
    main()
