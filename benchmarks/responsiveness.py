"""How long the GUI thread stalls while the docks compute, in the viewer's process or in the worker.

A QTimer ticks every 10 ms on the GUI thread; the gap between ticks beyond 10 ms is a stall.
Each measurement runs twice: on a quiet machine, and beside one CPU-bound neighbour process that
the benchmark starts itself (a busy laptop). For both compute paths (``in-process``: the engines
on a thread of the viewer's process; ``worker``: the dock's worker-process backend) it prints
the longest stall while a model computes, while its result layers are added and while the
Fine-tune dock trains; first-run and warm-run latency (worker / in-process; the worker is started
when the dock opens, as ``shared_backend`` does, and the longest stall while it starts is printed
too); the cancel delay; and the viewer's RSS before and after the runs. Goals: stalls < 50 ms in both conditions (the
worker path), warm run <= 1.1x in-process, RSS back within 200 MB. Needs a display:

    xvfb-run -a nice -n 10 .venv/bin/python benchmarks/responsiveness.py [--quick]

``--quick``: one condition (quiet) and no fine-tuning, to check the script itself;
``--training-only``: only the fine-tuning measurement.
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


PATHS = ("in-process", "worker")
ROUNDS = 3   # the first run of each path, then warm runs, alternating paths so the machine's drift hits both


def backends():
    """Fresh backends of both paths; the worker is started at once, as the dock's shared backend starts
    it when the dock opens (``core.backend.shared.PREWARMED``)."""
    from napari_medvision.core.backend import InProcessBackend, WorkerBackend
    from napari_medvision.core.models import cache

    cache.clear()   # each condition's first in-process run builds the model afresh, as the worker's does
    worker = WorkerBackend()
    worker.warm_up()
    return {"in-process": InProcessBackend(), "worker": worker}


def worker_started(ticker, worker) -> dict:
    """Pump until the pre-warmed worker has said it is ready: seconds since its start, longest stall."""
    start = time.perf_counter()
    ticker.ticks.clear()
    ticker.pump(until=lambda: worker._ready or (worker._connection is not None and worker._connection.poll()))
    return {"seconds": time.perf_counter() - start, "stall": ticker.gaps_ms().max()}


def one_run(widget, ticker) -> dict:
    """One run from the dock: seconds to the result, longest stalls computing / adding layers, RSS growth."""
    finished: list[float] = []
    deliver = widget._on_result

    def on_result(*args):  # the result reaches the GUI thread: computing ends, adding the layers begins
        finished.append(time.perf_counter())
        return deliver(*args)

    widget._on_result = on_result
    before = rss_mb()
    ticker.ticks.clear()
    start = time.perf_counter()
    widget.run()
    in_run = time.perf_counter() - start   # the GUI thread's own share: reading the layer, starting the worker
    ticker.pump(until=lambda: widget.worker is None)  # the dock drops its worker when it has finished
    ticker.pump(1.0)  # keep ticking until the result layers are on screen: adding them is part of the run
    widget._on_result = deliver
    stamps = np.asarray(ticker.ticks)
    gaps = np.diff(stamps) * 1000
    computing = stamps[1:] <= finished[0]
    worst = int(np.argmax(np.where(computing, gaps, 0)))
    for layer in [layer for layer in widget.viewer.layers if layer.name != "phantom"]:
        widget.viewer.layers.remove(layer)
    return {"seconds": finished[0] - start, "computing": gaps[computing].max(), "adding": gaps[~computing].max(),
            "worst_at": stamps[worst] - start, "rss": rss_mb() - before, "in_run": in_run * 1000}


def cancel_delay(widget, ticker) -> float:
    """Seconds from Cancel (during the sliding window) until the backend's job has ended."""
    widget.tta_check.setChecked(True)
    widget.run()
    ticker.pump(until=lambda: "sliding" in widget.progress.format() or widget.worker is None)
    asked = time.perf_counter()
    widget.cancel()
    ticker.pump(until=lambda: not widget.backend.busy)
    delay = time.perf_counter() - asked
    ticker.pump(until=lambda: widget.worker is None)
    widget.tta_check.setChecked(False)
    return delay


def repaint_floor(widget, ticker, times: int = 5) -> float:
    """The longest gap around a repaint of the dock's status and progress bar with nothing computing:
    what every progress update costs the GUI thread (with software OpenGL the whole window is composed
    again on the CPU), the floor of the stalls measured while computing."""
    worst = 0.0
    for number in range(times):
        ticker.ticks.clear()
        ticker.pump(0.2)
        widget.status.setText(f"repaint {number}")
        widget.progress.setValue(number * 10)
        ticker.pump(0.3)
        worst = max(worst, ticker.gaps_ms().max())
    widget.status.setText("")
    widget.progress.setValue(0)
    return worst


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
          f"{ticker.gaps_ms().max():.0f} ms; one repaint of the dock, nothing computing: longest gap "
          f"{repaint_floor(widget, ticker):.0f} ms")
    results = {}
    for condition in conditions:
        with neighbour(condition == "neighbour"):
            chosen = backends()
            started = worker_started(ticker, chosen["worker"])
            print(f"  {condition:<9} worker started (imports paid) in {started['seconds']:.1f} s, longest stall "
                  f"meanwhile {started['stall']:.0f} ms", flush=True)
            runs = {path: [] for path in PATHS}
            for number in range(ROUNDS):
                for path in PATHS:
                    widget.backend = chosen[path]
                    runs[path].append(one_run(widget, ticker))
                    r = runs[path][-1]
                    print(f"  {condition:<9} {path:<10} run {number + 1}: {r['seconds']:.1f} s, longest stall "
                          f"{r['computing']:.0f} ms ({r['worst_at']:.2f} s after Run; Run itself {r['in_run']:.0f} ms), adding "
                          f"{r['adding']:.0f} ms, RSS {r['rss']:+.0f} MB", flush=True)
            for path in PATHS:
                widget.backend = chosen[path]
                results[condition, path] = {"runs": runs[path], "cancel": cancel_delay(widget, ticker),
                                            "started": started if path == "worker" else None}
                chosen[path].close()
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
                chosen = backends()
                widget.backend = chosen[path]
                ticker.ticks.clear()
                start = time.perf_counter()
                widget.start()
                ticker.pump(until=lambda: widget.worker is None)
                gaps, worst = ticker.gaps_ms(), int(np.argmax(ticker.gaps_ms()))
                results[condition, path] = {"training": gaps.max(), "epochs": len(widget.plot.dices)}
                for backend in chosen.values():
                    backend.close()
                print(f"  fine-tuned {condition}, {path}: {time.perf_counter() - start:.0f} s, "
                      f"{len(widget.plot.dices)} epochs, longest stall {gaps.max():.0f} ms "
                      f"{ticker.ticks[worst] - start:.1f} s after Start", flush=True)
    viewer.close()
    return results


def report(results: dict, trains: dict, conditions) -> None:
    print("\nThe machine's other load is part of every figure: compare the paths within one condition.")
    print(f"{'condition':<11}{'path':<12}{'first s':>9}{'warm s':>8}{'cancel s':>9}{'stall computing':>17}"
          f"{'stall adding':>14}{'stall training':>16}{'RSS growth MB (worst run)':>27}")
    summary = {}
    for (condition, path), r in results.items():
        runs = r["runs"]
        summary[condition, path] = s = {
            "first": runs[0]["seconds"], "warm": min(x["seconds"] for x in runs[1:]), "cancel": r["cancel"],
            "computing": max(x["computing"] for x in runs), "adding": max(x["adding"] for x in runs),
            "rss": max(x["rss"] for x in runs),
            "training": trains.get((condition, path), {}).get("training", float("nan"))}
        print(f"{condition:<11}{path:<12}{s['first']:>9.1f}{s['warm']:>8.1f}{s['cancel']:>9.2f}"
              f"{s['computing']:>15.0f}ms{s['adding']:>12.0f}ms{s['training']:>14.0f}ms{s['rss']:>27.0f}")
    print("\nGoals (the worker path; warm = the fastest warm run of each path):")
    for condition in conditions:
        worker, inproc = summary[condition, "worker"], summary[condition, "in-process"]
        ratio = worker["warm"] / inproc["warm"]
        checks = [(f"longest stall computing {worker['computing']:.0f} ms < {GOAL_STALL_MS:.0f} ms "
                   f"(in-process {inproc['computing']:.0f} ms)", worker["computing"] < GOAL_STALL_MS),
                  (f"warm run {ratio:.2f}x in-process <= {GOAL_WARM_RATIO}x", ratio <= GOAL_WARM_RATIO),
                  (f"viewer RSS grew at most {worker['rss']:.0f} MB in a run (in-process {inproc['rss']:.0f} MB)"
                   f" <= {GOAL_RSS_MB:.0f} MB", worker["rss"] <= GOAL_RSS_MB),
                  (f"cancel took {worker['cancel']:.2f} s <= ~1 s", worker["cancel"] <= 1.5)]
        if not np.isnan(worker["training"]):
            checks.append((f"longest stall fine-tuning {worker['training']:.0f} ms < {GOAL_STALL_MS:.0f} ms "
                           f"(in-process {inproc['training']:.0f} ms)", worker["training"] < GOAL_STALL_MS))
        started = results[condition, "worker"]["started"]
        checks.insert(1, (f"longest stall while the worker starts {started['stall']:.0f} ms < {GOAL_STALL_MS:.0f} ms",
                          started["stall"] < GOAL_STALL_MS))
        print(f"  {condition}: first run {worker['first'] / inproc['first']:.2f}x in-process (the worker started "
              f"when the dock opened, {started['seconds']:.1f} s before); adding layers: longest stall "
              f"{worker['adding']:.0f} ms")
        for text, met in checks:
            print(f"    {'met    ' if met else 'NOT met'}  {text}")


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    conditions = ("quiet",) if quick else ("quiet", "neighbour")
    if "--training-only" in sys.argv:
        training(conditions)
        sys.exit(0)
    runs = inference(conditions)
    trains = {} if quick else training(conditions)
    report(runs, trains, conditions)
