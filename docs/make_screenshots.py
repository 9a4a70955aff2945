"""Take the user guide's screenshots from the real app.

Run under a (virtual) display::

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python docs/make_screenshots.py [NAME ...]

NAME picks some pictures (``demo``, ``phantom``, ``real_mr``, ``models``, ``nnunet``, ``finetune``,
``annotate``, ``label_next``).

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


def run_and_wait(widget, viewer) -> None:
    widget.run()
    while widget.worker is not None:  # the dock drops its worker when it has finished
        QApplication.processEvents()
    settle(viewer, 60)


def model_results() -> None:
    """Each task's result from the Run-model dock, with the shipped sample models (those not yet
    trained are skipped)."""
    from napari_medvision.core.models.bundle import SAMPLE_MODELS_DIR

    for model, picture, setup in [
        ("ct_organs_unet", "segmentation_unet.png", {"uncertainty_check": True}),
        ("lesion_classifier", "classification_gradcam.png", {}),
        ("nodule_detector", "detection_boxes.png", {}),
    ]:
        if not (SAMPLE_MODELS_DIR / model / "models").is_dir():
            print(f"skipped {picture}: {model} not trained", file=sys.stderr)
            continue
        viewer = napari.Viewer(title="napari-medvision")
        viewer.open_sample(PLUGIN, "ct_phantom")
        viewer.layers.remove("CT phantom labels")
        _, runner = viewer.window.add_plugin_dock_widget(PLUGIN, "Run model")
        runner.model_combo.setCurrentIndex([b.name for b in runner.bundles].index(model))
        for name, value in setup.items():
            getattr(runner, name).setChecked(value)
        run_and_wait(runner, viewer)
        if model == "nodule_detector":
            boxes = viewer.layers[-1]
            if len(boxes.data):
                viewer.dims.set_point(0, float((boxes.affine.affine_matrix @ [*boxes.data[0][0], 1])[0]))
        elif model == "ct_organs_unet":
            viewer.layers["ct_organs_unet uncertainty"].visible = False
            viewer.dims.set_point(0, -30.0)
        else:
            viewer.dims.set_point(0, 60.0)
        save(viewer, picture)
        viewer.close()


def nnunet_result() -> None:
    """An nnU-Net v2 model's result from the Run-model dock (the model of docs/nnunet_demo_model.py,
    given as ``$MEDVISION_NNUNET_DEMO``; skipped without it)."""
    import os

    model = os.environ.get("MEDVISION_NNUNET_DEMO")
    if not model or not Path(model).is_dir():
        print("skipped segmentation_nnunet.png: set MEDVISION_NNUNET_DEMO (docs/nnunet_demo_model.py)",
              file=sys.stderr)
        return
    viewer = napari.Viewer(title="napari-medvision")
    viewer.open_sample(PLUGIN, "ct_phantom")
    viewer.layers.remove("CT phantom labels")
    _, runner = viewer.window.add_plugin_dock_widget(PLUGIN, "Run model")
    runner.add_model(model)
    runner.device_combo.setCurrentText("cpu")
    run_and_wait(runner, viewer)
    viewer.dims.set_point(0, -30.0)
    save(viewer, "segmentation_nnunet.png")
    viewer.close()


def finetune_dock() -> None:
    """The Fine-tune dock after a short run on two corrected shifted cases."""
    import tempfile

    from napari.layers import Layer

    from napari_medvision._napari.layers import image_layer_data, labels_layer_data
    from napari_medvision.core.models.bundle import SAMPLE_MODELS_DIR
    from napari_medvision.core.phantom import LABELS, generate_phantom, shift_appearance

    if not (SAMPLE_MODELS_DIR / "ct_organs_unet" / "models").is_dir():
        return
    viewer = napari.Viewer(title="napari-medvision")
    _, trainer = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")
    trainer.model_combo.setCurrentIndex([b.name for b in trainer.base_bundles].index("ct_organs_unet"))
    trainer.open_store(Path(tempfile.mkdtemp()) / "my_cases")
    names = {v: k for k, v in LABELS.items() if v}
    for seed in (71, 72, 73):
        case = shift_appearance(generate_phantom(seed))
        viewer.add_layer(Layer.create(*image_layer_data(case.image, f"shifted {seed}")))
        viewer.add_layer(Layer.create(*labels_layer_data(case.label, f"shifted {seed} labels", names, opacity=0.4)))
        trainer.image_combo.setCurrentText(f"shifted {seed}")
        trainer.labels_combo.setCurrentText(f"shifted {seed} labels")
        trainer.add_case(f"shifted_{seed}")
    while trainer.writes.busy:   # cases are written in workers
        QApplication.processEvents()
    trainer.options["epochs"].value = 6
    trainer.options["max_minutes"].value = 2
    trainer.start()
    while trainer.worker is not None:
        QApplication.processEvents()
    settle(viewer, 40)
    save(viewer, "finetune_dock.png")
    viewer.close()


def save_window(viewer, name: str) -> None:
    """The whole window at the size it has (the demo fills the screen: use a 1920 x 1080 display)."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    settle(viewer, 40)
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    path = IMAGES / name
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path}")


def demo_window() -> None:
    """``medvision demo`` as it opens, then with the three linked views (MPR) on."""
    from napari_medvision._qt.demo import open_demo_viewer

    viewer = open_demo_viewer()
    save_window(viewer, "demo_window.png")
    study = next(w for n, w in viewer.window.dock_widgets.items() if n.startswith("Study"))
    study.mpr_check.setChecked(True)
    study.mpr.move_to((-30.0, 10.0, -60.0))   # through the liver and a kidney
    save_window(viewer, "mpr_views.png")
    study.mpr_check.setChecked(False)
    viewer.close()


def annotate_dock() -> None:
    """The Annotate dock: two + clicks and one - click on the phantom's liver, the mask preview."""
    import numpy as np

    from napari_medvision.core.phantom import LABELS

    viewer = napari.Viewer(title="napari-medvision")
    viewer.open_sample(PLUGIN, "ct_phantom")
    _, annotate = viewer.window.add_plugin_dock_widget(PLUGIN, "Annotate")
    image, labels = viewer.layers[0], viewer.layers[1]
    labels.visible = False
    annotate.image_combo.setCurrentText(image.name)
    liver = np.argwhere(np.asarray(labels.data) == LABELS["liver"])
    centre = np.median(liver, axis=0).astype(int)
    annotate.new_structure()
    points = viewer.layers["prompts"]
    for offset, sign in (((0, 0, 0), "+"), ((0, 8, -6), "+"), ((0, -14, 24), "-")):
        annotate.set_sign(sign)
        points.add(np.asarray(centre + offset, float))
        while annotate.generation != annotate._shown:
            QApplication.processEvents()
    viewer.dims.set_point(0, float(image.data_to_world(centre)[0]))
    save(viewer, "annotate_clicks.png")
    viewer.close()


def label_next_table() -> None:
    """The Fine-tune dock's Label next table over five phantom studies (two with shifted appearance)."""
    import tempfile

    from napari_medvision.core.io import write_volume
    from napari_medvision.core.models.bundle import SAMPLE_MODELS_DIR
    from napari_medvision.core.phantom import generate_phantom, shift_appearance

    if not (SAMPLE_MODELS_DIR / "ct_organs_unet" / "models").is_dir():
        return
    folder = Path(tempfile.mkdtemp()) / "to_annotate"
    folder.mkdir()
    for seed in range(81, 86):
        case = generate_phantom(seed, shape=(48, 96, 96), spacing=(3.7, 3.7, 6.7))
        write_volume((shift_appearance(case) if seed % 2 else case).image, folder / f"study_{seed}.nii.gz")
    viewer = napari.Viewer(title="napari-medvision")
    _, trainer = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")
    trainer.model_combo.setCurrentIndex([b.name for b in trainer.base_bundles].index("ct_organs_unet"))
    panel = trainer.label_next
    panel.folder_edit.setText(str(folder))
    panel.rank()
    while panel.worker is not None:
        QApplication.processEvents()
    panel.table.selectRow(0)
    panel.open_study(0)
    first = panel.table.item(0, 2).text().split(".")[0]
    while first not in viewer.layers:   # read in a worker
        QApplication.processEvents()
    viewer.dims.set_point(0, 0.0)
    settle(viewer, 40)
    save(viewer, "label_next.png")
    viewer.close()


PICTURES = {"phantom": phantom_in_ct_window, "real_mr": real_mr_with_tumour, "models": model_results,
            "nnunet": nnunet_result, "finetune": finetune_dock, "demo": demo_window,
            "annotate": annotate_dock, "label_next": label_next_table}


if __name__ == "__main__":
    # xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python docs/make_screenshots.py [demo models ...]
    IMAGES.mkdir(exist_ok=True)
    for name in sys.argv[1:] or PICTURES:
        PICTURES[name]()
