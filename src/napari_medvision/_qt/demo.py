"""``medvision demo``: napari with the CT phantom and its segmentation, the Study dock, the
Run-model dock with the sample U-Net selected (ready to press Run), and the Fine-tune dock; the
window fills the screen, the docks form one narrow tabbed column and the study fills the canvas."""

from __future__ import annotations

import importlib.util
import os
import sys

PLUGIN = "napari-medvision"
DEMO_MODEL = "ct_organs_unet"


def open_demo_viewer(show: bool = True):
    """A viewer with the CT phantom and its labels shown, every MedVision dock added, laid out."""
    import napari

    from . import workstation

    viewer = napari.Viewer(title="napari-medvision demo", show=show)
    viewer.open_sample(PLUGIN, "ct_phantom")
    labels = viewer.layers["CT phantom labels"]
    labels.visible, labels.opacity = True, 0.5   # the segmentation is what the demo is about
    workstation.quiet_labels(labels)
    _, study = viewer.window.add_plugin_dock_widget(PLUGIN, "Study")
    _, runner = viewer.window.add_plugin_dock_widget(PLUGIN, "Run model", tabify=True)
    _, trainer = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune", tabify=True)
    names = [bundle.name for bundle in runner.bundles]
    if DEMO_MODEL in names:
        runner.model_combo.setCurrentIndex(names.index(DEMO_MODEL))
    runner.image_combo.setCurrentText("CT phantom")
    viewer.layers.selection.active = viewer.layers["CT phantom"]
    workstation.show_hint(viewer)
    if show:
        workstation.fill_screen(viewer)
    workstation.narrow_column(viewer, [runner, study, trainer])
    workstation.fit_study(viewer)
    return viewer


def prefer_qt6() -> None:
    """Run on PyQt6 where it is installed and no binding was chosen (``QT_API``) or imported yet.

    napari's default binding is PyQt6 and it warns that PyQt5 support is deprecated, but qtpy
    takes PyQt5 first when both are installed.
    """
    chosen = "QT_API" in os.environ or any(m in sys.modules for m in ("PyQt5", "PyQt6", "PySide2", "PySide6"))
    if not chosen and importlib.util.find_spec("PyQt6") is not None:
        os.environ["QT_API"] = "pyqt6"


def run_demo() -> None:
    prefer_qt6()
    import napari

    open_demo_viewer()
    napari.run()
