"""Take the user guide's screenshots from the real app.

Run under a (virtual) display::

    xvfb-run -a .venv/bin/python docs/make_screenshots.py

The real-MR picture needs ``../shared/data/pyradiomics`` and is skipped without it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_medvision._qt.demo import PLUGIN
from napari_medvision._qt.study_widget import StudyWidget

IMAGES = Path(__file__).parent / "images"
REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pyradiomics"


def settle(viewer, rounds: int = 20) -> None:
    for _ in range(rounds):
        QApplication.processEvents()


def save(viewer, name: str) -> None:
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    viewer.window._qt_window.resize(1400, 900)
    settle(viewer)
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    viewer.reset_view()
    settle(viewer)
    path = IMAGES / name
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path}")


def phantom_in_ct_window() -> None:
    viewer = napari.Viewer(title="napari-medvision")
    viewer.open_sample(PLUGIN, "ct_phantom")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Study")
    image, labels = viewer.layers
    viewer.dims.set_point(0, -30.0)  # an abdominal slice (world z in mm)
    viewer.layers.selection.active = image
    widget.preset_combo.setCurrentText("Mediastinum / soft tissue")
    widget._on_cursor()
    widget.cursor_label.setText(widget.describe_point((-30.0, -20.0, -60.0)))
    save(viewer, "ct_phantom_soft_tissue.png")
    widget.preset_combo.setCurrentText("Lung")
    viewer.dims.set_point(0, 60.0)
    labels.visible = True
    save(viewer, "ct_phantom_lung_labels.png")
    viewer.close()


def real_mr_with_tumour() -> None:
    if not REAL_DATA.is_dir():
        print(f"skipped the real MR screenshot: {REAL_DATA} not found", file=sys.stderr)
        return
    viewer = napari.Viewer(title="napari-medvision")
    viewer.open(str(REAL_DATA / "brain1_image.nrrd"), plugin=PLUGIN)
    viewer.open(str(REAL_DATA / "brain1_label.nrrd"), plugin=PLUGIN)
    widget = StudyWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Study")
    viewer.layers.selection.active = viewer.layers[0]
    widget.preset_combo.setCurrentText("Auto (1–99%)")
    label = viewer.layers[1]
    label.opacity = 0.6
    z = int(label.data.sum(axis=(1, 2)).argmax())
    viewer.dims.set_point(0, float((label.affine.affine_matrix @ [z, 0, 0, 1])[0]))
    save(viewer, "real_mr_tumour.png")
    viewer.close()


if __name__ == "__main__":
    IMAGES.mkdir(exist_ok=True)
    phantom_in_ct_window()
    real_mr_with_tumour()
