"""GUI-thread cost of one slice step (the axial slider) with and without the linked MPR views.

Run under a display: ``xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python benchmarks/mpr_scroll.py``.
Prints a table of milliseconds per step (median of the steps, each until Qt has painted) and the ratio.
"""

from __future__ import annotations

import statistics
import time

import napari
from qtpy.QtWidgets import QApplication

from napari_medvision._qt.mpr import close_mpr, open_mpr
from napari_medvision._qt.workstation import fill_screen, settle

STEPS = 30


def step_ms(viewer) -> float:
    """Median ms of moving the axial slice one step and letting Qt paint."""
    app = QApplication.instance()
    times = []
    for k in range(STEPS):
        start = time.perf_counter()
        viewer.dims.set_current_step(0, 10 + k)
        app.processEvents()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    viewer = napari.Viewer()
    viewer.open_sample("napari-medvision", "ct_phantom")
    fill_screen(viewer)
    settle(20)
    alone = step_ms(viewer)
    views = open_mpr(viewer)
    settle(20)
    linked = step_ms(viewer)
    close_mpr(viewer, views)
    viewer.close()
    print("| layout | ms per slice step (median of %d) |" % STEPS)
    print("|---|---|")
    print(f"| axial only | {alone:.1f} |")
    print(f"| axial + coronal + sagittal, linked | {linked:.1f} |")
    print(f"ratio linked / alone: {linked / alone:.2f}")


if __name__ == "__main__":
    main()
