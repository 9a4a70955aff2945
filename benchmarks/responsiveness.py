"""How long the GUI thread stalls while the docks compute, in the viewer's process or in the worker.

A QTimer ticks every 10 ms on the GUI thread; the gap between ticks beyond 10 ms is a stall.
Each measurement runs twice: on a quiet machine, and beside one CPU-bound neighbour process that
the benchmark starts itself (a busy laptop). For both compute paths (``in-process``: the engines
on a thread of the viewer's process; ``worker``: the dock's worker-process backend) it prints
the longest stall while a model computes, while its result layers are added and while the
Fine-tune dock trains; first-run and warm-run latency (worker / in-process); the cancel delay;
and the viewer's RSS before and after the runs. Goals: stalls < 50 ms in both conditions (the
worker path), warm run <= 1.1x in-process, RSS back within 200 MB. Needs a display:

    xvfb-run -a nice -n 10 .venv/bin/python benchmarks/responsiveness.py [--quick]

``--quick``: one condition (quiet) and no fine-tuning, to check the script itself.
"""

from __future__ import annotations

import contextlib
import gc
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from _common import make_bundle  # noqa: E402


class Ticker:
    """A QTimer ticking every 10 ms on the GUI thread; the gaps between ticks are the stalls."""

    def __init__(self):
        from qtpy.QtCore import QTimer
        from qtpy.QtWidgets import QApplication

        self.app = QApplication.instance()
        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))
        self.timer.start()

    def pump(self, seconds: float | None = None, until=None) -> None:
        """Run the Qt event loop, as napari does, for ``seconds`` or until ``until()`` is true.

        (A ``processEvents()`` + 1 ms sleep loop would keep the GUI thread busy taking the GIL a
        thousand times a second, which napari's own event loop does not do.)
        """
        from qtpy.QtCore import QEventLoop, QTimer

        end = time.perf_counter() + (seconds or 0)
        loop = QEventLoop()
        check = QTimer()
        check.setInterval(20)

        def poll():
            if (until is not None and until()) or (until is None and time.perf_counter() >= end):
                loop.quit()

        check.timeout.connect(poll)
        check.start()
        loop.exec_()
        check.stop()

    def gaps_ms(self) -> np.ndarray:
        return np.diff(self.ticks) * 1000 if len(self.ticks) > 1 else np.zeros(1)


GOAL_STALL_MS, GOAL_WARM_RATIO, GOAL_RSS_MB = 50.0, 1.1, 200.0


@contextlib.contextmanager
def neighbour(active: bool):
    """One CPU-bound process beside the viewer (started and ended here, by its pid)."""
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if active else None
    try:
        yield
    finally:
        if process is not None:
            process.kill()
            process.wait()


def rss_mb() -> float:
    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def backend_for(path: str):
    from napari_medvision.core.backend import InProcessBackend, WorkerBackend
    from napari_medvision.core.models import cache

    cache.clear()   # each path's first run builds the model afresh
    return InProcessBackend() if path == "in-process" else WorkerBackend()


def timed_runs(widget, ticker) -> dict:
    """Two runs (first, warm) from the dock: seconds, stalls computing and adding layers; then a cancel."""
    finished: list[float] = []
    deliver = widget._on_result

    def on_result(*args):  # the result reaches the GUI thread: computing ends, adding the layers begins
        finished.append(time.perf_counter())
        return deliver(*args)

    widget._on_result = on_result
    out = {}
    for number in (1, 2):
        ticker.ticks.clear()
        finished.clear()
        start = time.perf_counter()
        widget.run()
        ticker.pump(until=lambda: widget.worker is None)  # the dock drops its worker when it has finished
        ticker.pump(1.0)  # keep ticking until the result layers are on screen: adding them is part of the run
        stamps = np.asarray(ticker.ticks)
        gaps = np.diff(stamps) * 1000
        out[number] = {"seconds": finished[0] - start, "computing": gaps[stamps[1:] <= finished[0]].max(),
                       "adding": gaps[stamps[1:] > finished[0]].max()}
        for layer in [layer for layer in widget.viewer.layers if layer.name != "phantom"]:
            widget.viewer.layers.remove(layer)
    widget._on_result = deliver
    widget.tta_check.setChecked(True)
    widget.run()
    ticker.pump(until=lambda: "sliding" in widget.progress.format() or widget.worker is None)
    asked = time.perf_counter()
    widget.cancel()
    ticker.pump(until=lambda: not widget.backend.busy)
    out["cancel"] = time.perf_counter() - asked
    ticker.pump(until=lambda: widget.worker is None)
    widget.tta_check.setChecked(False)
    return out


def inference(conditions) -> dict:
    import napari
    from napari.layers import Layer
    from napari_medvision._napari.layers import image_layer_data
    from napari_medvision._qt.inference_widget import InferenceWidget
    from napari_medvision.core.models import load_bundle
    from napari_medvision.core.phantom import generate_phantom

    work = Path(tempfile.mkdtemp(prefix="medvision-resp-"))
    bundle_path, source = make_bundle(work / "spleen")
    viewer = napari.Viewer(show=True)
    case = generate_phantom(7, shape=(64, 160, 160), spacing=(2.5, 2.5, 3.0))
    viewer.add_layer(Layer.create(*image_layer_data(case.image, "phantom")))
    widget = InferenceWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.set_bundles([load_bundle(bundle_path)])
    ticker = Ticker()
    ticker.pump(3.0)  # the dock's background warm-up (MONAI imports) finishes, as it would for a user
    ticker.ticks.clear()
    ticker.pump(2.0)
    print(f"network: {source}; study {case.image.shape} (z, y, x); idle viewer: longest gap "
          f"{ticker.gaps_ms().max():.0f} ms")
    results = {}
    for condition in conditions:
        with neighbour(condition == "neighbour"):
            for path in ("in-process", "worker"):
                widget.backend = backend_for(path)
                before = rss_mb()
                results[condition, path] = timed_runs(widget, ticker)
                results[condition, path]["rss"] = (before, rss_mb())
                widget.backend.close()
                print(f"  measured {condition}, {path}", flush=True)
    viewer.close()
    return results


def training(conditions) -> dict:
    """The longest stall while the Fine-tune dock trains (live plot included), per condition and path."""
    import napari
    from napari.layers import Layer
    from napari_medvision._napari.layers import image_layer_data, labels_layer_data
    from napari_medvision._qt.training_widget import TrainingWidget
    from napari_medvision.core.phantom import LABELS, generate_phantom, shift_appearance

    viewer = napari.Viewer(show=True)
    widget = TrainingWidget(viewer)
    viewer.window.add_dock_widget(widget)
    names = [b.name for b in widget.base_bundles]
    if "ct_organs_unet" not in names:
        print("no ct_organs_unet sample model: skipped the training measurement")
        return {}
    widget.model_combo.setCurrentIndex(names.index("ct_organs_unet"))
    widget.open_store(Path(tempfile.mkdtemp()) / "cases")
    for seed in (71, 72, 73):
        case = shift_appearance(generate_phantom(seed))
        viewer.add_layer(Layer.create(*image_layer_data(case.image, f"s{seed}")))
        viewer.add_layer(Layer.create(*labels_layer_data(case.label, f"s{seed} labels",
                                                         {v: k for k, v in LABELS.items() if v})))
        widget.image_combo.setCurrentText(f"s{seed}")
        widget.labels_combo.setCurrentText(f"s{seed} labels")
        widget.add_case(f"s{seed}")
    widget.options["max_minutes"].value = 0.5
    ticker = Ticker()
    ticker.pump(until=lambda: not widget.writes.busy)   # cases are written in workers
    ticker.pump(3.0)
    results = {}
    for condition in conditions:
        with neighbour(condition == "neighbour"):
            for path in ("in-process", "worker"):
                widget.backend = backend_for(path)
                ticker.ticks.clear()
                widget.start()
                ticker.pump(until=lambda: widget.worker is None)
                gaps = ticker.gaps_ms()
                results[condition, path] = {"training": gaps.max(), "epochs": len(widget.plot.dices)}
                widget.backend.close()
                print(f"  fine-tuned {condition}, {path}", flush=True)
    viewer.close()
    return results


def report(runs: dict, trains: dict, conditions) -> None:
    print("\nThe machine's other load is part of every figure: compare paths within one condition.")
    print(f"{'condition':<11}{'path':<12}{'first s':>9}{'warm s':>8}{'cancel s':>9}{'stall computing':>17}"
          f"{'stall adding':>14}{'stall training':>16}{'RSS before/after MB':>21}")
    for (condition, path), r in runs.items():
        train = trains.get((condition, path), {}).get("training", float("nan"))
        stall = max(r[1]["computing"], r[2]["computing"])
        adding = max(r[1]["adding"], r[2]["adding"])
        print(f"{condition:<11}{path:<12}{r[1]['seconds']:>9.1f}{r[2]['seconds']:>8.1f}{r['cancel']:>9.2f}"
              f"{stall:>15.0f}ms{adding:>12.0f}ms{train:>14.0f}ms{r['rss'][0]:>11.0f} / {r['rss'][1]:.0f}")
    print("\nGoals (worker path):")
    for condition in conditions:
        worker, inproc = runs[condition, "worker"], runs[condition, "in-process"]
        stall = max(worker[1]["computing"], worker[2]["computing"])
        ratio = worker[2]["seconds"] / inproc[2]["seconds"]
        first = worker[1]["seconds"] / inproc[1]["seconds"]
        grown = worker["rss"][1] - worker["rss"][0]
        checks = [(f"longest stall computing {stall:.0f} ms < {GOAL_STALL_MS:.0f} ms", stall < GOAL_STALL_MS),
                  (f"warm run {ratio:.2f}x in-process <= {GOAL_WARM_RATIO}x", ratio <= GOAL_WARM_RATIO),
                  (f"viewer RSS grew {grown:.0f} MB over two runs (in-process: "
                   f"{inproc['rss'][1] - inproc['rss'][0]:.0f} MB) <= {GOAL_RSS_MB:.0f} MB", grown <= GOAL_RSS_MB),
                  (f"cancel took {worker['cancel']:.2f} s <= ~1 s", worker["cancel"] <= 1.5)]
        if (condition, "worker") in trains:
            train = trains[condition, "worker"]["training"]
            checks.append((f"longest stall fine-tuning {train:.0f} ms < {GOAL_STALL_MS:.0f} ms",
                           train < GOAL_STALL_MS))
        print(f"  {condition}: first run {first:.2f}x in-process (includes starting the worker)")
        for text, met in checks:
            print(f"    {'met    ' if met else 'NOT met'}  {text}")


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    conditions = ("quiet",) if quick else ("quiet", "neighbour")
    runs = inference(conditions)
    trains = {} if quick else training(conditions)
    report(runs, trains, conditions)
