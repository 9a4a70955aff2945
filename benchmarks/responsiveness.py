"""How long the GUI thread stalls while a 3D segmentation runs from the Run-model dock.

A QTimer ticks every 10 ms on the GUI thread; the gap between ticks beyond 10 ms
is a stall. Goal: the longest stall under 50 ms. Needs a display (run under
``xvfb-run -a``):

    xvfb-run -a .venv/bin/python benchmarks/responsiveness.py
"""

from __future__ import annotations

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


def main() -> None:
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
    ticks = ticker.ticks
    ticker.pump(3.0)  # the dock's background warm-up (MONAI imports) finishes, as it would for a user
    ticks.clear()
    ticker.pump(2.0)
    idle = ticker.gaps_ms()
    rows = [("idle viewer", idle)]
    finished: list[float] = []
    deliver = widget._on_result

    def on_result(*args):  # the result reaches the GUI thread: computing ends, adding the layers begins
        finished.append(time.perf_counter())
        return deliver(*args)

    widget._on_result = on_result
    for number in (1, 2):
        ticks.clear()
        finished.clear()
        start = time.perf_counter()
        widget.run()
        ticker.pump(until=lambda: widget.worker is None)  # the dock drops its worker when it has finished
        ticker.pump(1.0)  # keep ticking until the result layers are on screen: adding them is part of the run
        stamps = np.asarray(ticks)
        gaps_ms = np.diff(stamps) * 1000
        computing = gaps_ms[stamps[1:] <= finished[0]]
        adding = gaps_ms[stamps[1:] > finished[0]]
        worst = int(np.argmax(computing))
        print(f"run {number}: the model ran {finished[0] - start:.1f} s; its longest stall, "
              f"{computing[worst]:.0f} ms, came {stamps[worst] - start:.2f} s after Run")
        label = "first" if number == 1 else "warm"
        rows.append((f"run {number} ({label}) computing", computing))
        rows.append((f"run {number} ({label}) adding layers", adding))
    print(f"network: {source}; study {case.image.shape} (z, y, x)")
    print(f"{'phase':<34}{'ticks':>7}{'median ms':>11}{'p99 ms':>9}{'max ms':>9}")
    for name, values in rows:
        print(f"{name:<34}{len(values):>7}{np.median(values):>11.1f}{np.percentile(values, 99):>9.1f}"
              f"{values.max():>9.1f}")
    print("\nA stall is the gap between 10 ms ticks; goal: max < 50 ms while a model runs.")
    viewer.close()


def training() -> None:
    """The same tick measurement while the Fine-tune dock trains (live plot included)."""
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
        return
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
    widget.options["max_minutes"].value = 1.0
    ticker = Ticker()
    ticker.pump(until=lambda: not widget.writes.busy)   # cases are written in workers
    ticker.pump(3.0)
    ticker.ticks.clear()
    widget.start()
    ticker.pump(until=lambda: widget.worker is None)
    gaps = ticker.gaps_ms()
    print(f"fine-tuning from the dock: {len(widget.plot.dices)} epochs in 1 min; ticks {len(gaps)}, "
          f"median {np.median(gaps):.1f} ms, p99 {np.percentile(gaps, 99):.1f} ms, max {gaps.max():.1f} ms "
          "(goal: max < 50 ms)")
    viewer.close()


if __name__ == "__main__":
    main()
    training()
