"""``medvision demo``: napari with the CT phantom and its segmentation, the Study dock, the
Run-model dock with the sample U-Net selected (ready to press Run), the Fine-tune dock and the
Annotate dock (click an organ for its 3D mask); the
window fills the screen, the docks form one narrow tabbed column and the study fills the canvas.
``medvision demo --radiograph``: the same with the synthetic chest radiograph and the 2D classifier."""

from __future__ import annotations

import importlib.util
import os
import sys

PLUGIN = "napari-medvision"
DEMO_MODEL = "ct_organs_unet"
#: The 2D demo: sample (napari.yaml key), its layer, the model to select.
RADIOGRAPH_DEMO = ("chest_radiograph", "chest radiograph", "radiograph_classifier")


def open_demo_viewer(show: bool = True, radiograph: bool = False):
    """A viewer with the CT phantom and its labels shown (or the chest radiograph), every MedVision
    dock added, laid out, the matching sample model chosen."""
    import napari

    from . import workstation

    viewer = napari.Viewer(title="napari-medvision demo", show=show)
    sample, image, model = RADIOGRAPH_DEMO if radiograph else ("ct_phantom", "CT phantom", DEMO_MODEL)
    viewer.open_sample(PLUGIN, sample)
    if not radiograph:
        labels = viewer.layers["CT phantom labels"]
        labels.visible, labels.opacity = True, 0.5   # the segmentation is what the demo is about
        workstation.quiet_labels(labels)
    _, study = viewer.window.add_plugin_dock_widget(PLUGIN, "Study")
    _, runner = viewer.window.add_plugin_dock_widget(PLUGIN, "Run model", tabify=True)
    _, trainer = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune", tabify=True)
    docks = [runner, study, trainer]
    if not radiograph:   # clicks make 3D masks; the radiograph demo is about the 2D classifier
        _, annotate = viewer.window.add_plugin_dock_widget(PLUGIN, "Annotate", tabify=True)
        annotate.image_combo.setCurrentText(image)
        annotate.labels_combo.setCurrentText("CT phantom labels")
        docks.append(annotate)
    names = [bundle.name for bundle in runner.bundles]
    if model in names:
        runner.model_combo.setCurrentIndex(names.index(model))
    runner.image_combo.setCurrentText(image)
    viewer.layers.selection.active = viewer.layers[image]
    workstation.show_hint(viewer, workstation.RADIOGRAPH_HINT if radiograph else workstation.HINT)
    if show:
        workstation.fill_screen(viewer)
    workstation.narrow_column(viewer, docks)
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


def run_demo(radiograph: bool = False) -> None:
    prefer_qt6()
    import napari

    open_demo_viewer(radiograph=radiograph)
    napari.run()
