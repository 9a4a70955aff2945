"""The Run-model dock in a real viewer: results as layers, cancel and failures change nothing."""

import json

import numpy as np
import pytest
from napari.layers import Image, Labels, Layer, Shapes
from qtpy.QtWidgets import QMessageBox

from napari_medvision._napari.layers import image_layer_data
from napari_medvision._qt.inference_widget import InferenceWidget
from napari_medvision.core.backend import InProcessBackend
from napari_medvision.core.models import load_bundle
from napari_medvision.core.phantom import generate_phantom
from tests.bundles import classifier_bundle, detector_bundle, threshold_bundle, unet_bundle

pytestmark = pytest.mark.gui


@pytest.fixture
def setup(make_napari_viewer):
    viewer = make_napari_viewer()
    case = generate_phantom(4, shape=(20, 48, 48), spacing=(6.0, 6.0, 10.0), direction=np.diag([1.0, -1.0, 1.0]))
    viewer.add_layer(Layer.create(*image_layer_data(case.image, "phantom")))
    widget = InferenceWidget(viewer)
    return viewer, widget, case


def run_and_wait(qtbot, widget, **kwargs):
    worker = widget.run(**kwargs)
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120000)
    qtbot.wait(50)
    return worker


def test_segmentation_result_arrives_as_named_labels(setup, qtbot, tmp_path):
    viewer, widget, case = setup
    widget.set_bundles([load_bundle(threshold_bundle(tmp_path / "dense_ct"))])
    widget.uncertainty_check.setChecked(True)
    run_and_wait(qtbot, widget)
    labels = viewer.layers["dense_ct labels"]
    assert isinstance(labels, Labels)
    np.testing.assert_allclose(labels.affine.affine_matrix, viewer.layers["phantom"].affine.affine_matrix)
    assert labels.data.shape == case.image.shape
    assert list(labels.features["name"]) == ["background", "dense"]
    assert isinstance(viewer.layers["dense_ct uncertainty"], Image)
    assert widget.table.item(0, 0).text() == "dense" and widget.table.item(0, 1).text().endswith("mL")
    assert widget.progress.value() == widget.progress.maximum()


def test_classification_and_detection_results(setup, qtbot, tmp_path):
    viewer, widget, case = setup
    widget.set_bundles([load_bundle(classifier_bundle(tmp_path / "cls")),
                        load_bundle(detector_bundle(tmp_path / "det"))])
    run_and_wait(qtbot, widget)
    heat = [layer for layer in viewer.layers if "Grad-CAM" in layer.name]
    assert heat and heat[0].data.shape == case.image.shape
    assert widget.table.item(2, 0).text() == "prediction"
    widget.model_combo.setCurrentIndex(1)
    run_and_wait(qtbot, widget)
    boxes = viewer.layers["det boxes"]
    assert isinstance(boxes, Shapes) and len(boxes.data) > 0
    np.testing.assert_allclose(boxes.affine.affine_matrix, viewer.layers["phantom"].affine.affine_matrix)
    assert set(boxes.features["label"]) == {"nodule"}


def test_cancel_leaves_layers_untouched(setup, qtbot, tmp_path):
    viewer, widget, _ = setup
    widget.set_bundles([load_bundle(unet_bundle(tmp_path / "unet"))])
    widget.tta_check.setChecked(True)
    widget.batch_spin.setValue(1)
    before = [layer.name for layer in viewer.layers]
    widget.run()
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120000)
    qtbot.wait(100)
    assert [layer.name for layer in viewer.layers] == before
    assert widget.run_button.isEnabled()


def test_failed_run_notifies_and_changes_nothing(setup, qtbot, tmp_path, monkeypatch):
    viewer, widget, _ = setup
    errors = []
    monkeypatch.setattr("napari_medvision._qt.workers.show_error", errors.append)
    widget.set_bundles([load_bundle(unet_bundle(tmp_path / "two", in_channels=2))])
    run_and_wait(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == ["phantom"]
    assert "expects 2 input channel" in errors[0]


def test_untrusted_bundle_asks_before_running(setup, qtbot, tmp_path, monkeypatch):
    viewer, widget, _ = setup
    folder = threshold_bundle(tmp_path / "needs_trust")
    config = json.loads((folder / "configs" / "inference.json").read_text())
    config["network_def"]["kernel_size"] = "$abs(1)"  # a call: needs trust
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.Yes)
    widget.set_bundles([load_bundle(folder)])
    widget.run()
    qtbot.waitUntil(lambda: "needs_trust labels" in viewer.layers, timeout=120000)
    assert "runs its own code" in asked[0]


def test_a_failure_inside_monai_is_reported_not_swallowed(setup, qtbot, tmp_path, monkeypatch):
    """MONAI raises RuntimeError; superqt would end such a generator worker silently."""
    viewer, widget, _ = setup
    errors = []
    monkeypatch.setattr("napari_medvision._qt.workers.show_error", errors.append)

    def broken(*args, **kwargs):
        yield from ()
        raise RuntimeError("applying transform Orientationd")

    monkeypatch.setattr("napari_medvision.core.inference.run.run_model", broken)
    widget.backend = InProcessBackend()   # the broken engine is this process's: compute here
    widget.set_bundles([load_bundle(threshold_bundle(tmp_path / "thr"))])
    run_and_wait(qtbot, widget)
    assert errors and "RuntimeError: applying transform" in errors[0]
    assert [layer.name for layer in viewer.layers] == ["phantom"]
