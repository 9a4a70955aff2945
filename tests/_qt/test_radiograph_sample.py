"""The 2D sample in the GUI: File > Open Sample's chest radiograph, the Run-model dock choosing the 2D
classifier for it, its probabilities and Grad-CAM on the radiograph's own grid."""

import numpy as np
import pytest
from napari.layers import Image, Layer

from napari_medvision._napari.layers import image_layer_data
from napari_medvision._qt.inference_widget import InferenceWidget
from napari_medvision._qt.model_dims import layer_dims, model_for
from napari_medvision.core.backend import InProcessBackend
from napari_medvision.core.models.bundle import SAMPLE_MODELS_DIR
from napari_medvision.core.phantom import generate_phantom

pytestmark = pytest.mark.gui


class _Model:
    def __init__(self, dims):
        self.spatial_dims = dims


class _Layer:
    def __init__(self, shape, rgb=False):
        self.data, self.rgb = np.zeros(shape), rgb


def test_model_for_picks_a_model_of_the_layers_dimensionality():
    models = [_Model(3), _Model(3), _Model(2)]
    film, ct = _Layer((1, 64, 96)), _Layer((20, 48, 48))
    assert layer_dims(film) == 2 and layer_dims(_Layer((1, 8, 8, 3), rgb=True)) == 2 and layer_dims(ct) == 3
    assert model_for(models, film, 0) == 2
    assert model_for(models, ct, 2) == 0
    assert model_for(models, ct, 1) == 1, "a model that suits the layer stays chosen"
    assert model_for(models[:2], film, 1) == 1, "no 2D model: the choice stays"


def test_chest_radiograph_sample_runs_the_2d_classifier_through_the_dock(make_napari_viewer, qtbot):
    if not (SAMPLE_MODELS_DIR / "radiograph_classifier" / "models").is_dir():
        pytest.skip("the radiograph_classifier sample model is not shipped in this checkout")
    viewer = make_napari_viewer()
    case = generate_phantom(4, shape=(20, 48, 48), spacing=(6.0, 6.0, 10.0))
    viewer.add_layer(Layer.create(*image_layer_data(case.image, "phantom")))
    widget = InferenceWidget(viewer)
    widget.backend = InProcessBackend()   # the dock's own path; no worker process to start in the test
    names = [bundle.name for bundle in widget.bundles]
    widget.model_combo.setCurrentIndex(names.index("ct_organs_unet"))
    widget.image_combo.setCurrentText("phantom")

    viewer.open_sample("napari-medvision", "chest_radiograph")
    film = viewer.layers["chest radiograph"]
    assert film.data.shape == (1, 64, 96)
    assert widget.image_combo.currentText() == "chest radiograph"
    assert widget.selected_bundle().name == "radiograph_classifier", "the dock chose the 2D model for the film"

    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120000)
    qtbot.waitUntil(lambda: any("Grad-CAM" in layer.name for layer in viewer.layers), timeout=10000)
    heat = next(layer for layer in viewer.layers if "Grad-CAM" in layer.name)
    assert isinstance(heat, Image) and heat.data.shape == film.data.shape
    np.testing.assert_allclose(heat.affine.affine_matrix, film.affine.affine_matrix)
    rows = {widget.table.item(r, 0).text(): widget.table.item(r, 1).text() for r in range(widget.table.rowCount())}
    assert set(rows) == {"no nodule", "nodule", "prediction"}
    assert abs(float(rows["no nodule"]) + float(rows["nodule"]) - 1.0) < 2e-3
    assert rows["prediction"] == "nodule", "the sample film's 24 mm nodule is what the demo shows"
    assert np.unravel_index(np.argmax(heat.data[0]), heat.data.shape[1:])[1] > heat.data.shape[2] // 2, \
        "Grad-CAM is hottest on the nodule's side of the film"

    widget.image_combo.setCurrentText("phantom")   # the user picks the CT again: a 3D model is chosen
    widget.image_combo.activated.emit(widget.image_combo.currentIndex())
    assert widget.selected_bundle().spatial_dims == 3


def test_radiograph_demo_opens_the_film_with_the_2d_model_chosen(make_napari_viewer, monkeypatch):
    import napari

    from napari_medvision._qt import demo
    from napari_medvision.core.models import find_bundle

    if not (SAMPLE_MODELS_DIR / "radiograph_classifier" / "models").is_dir():
        pytest.skip("the radiograph_classifier sample model is not shipped in this checkout")
    models = [find_bundle("ct_organs_unet"), find_bundle("radiograph_classifier")]
    monkeypatch.setattr("napari_medvision._qt.inference_widget.list_models", lambda: models)
    monkeypatch.setattr(napari, "Viewer", lambda **kwargs: make_napari_viewer())
    viewer = demo.open_demo_viewer(show=False, radiograph=True)
    assert [layer.name for layer in viewer.layers] == ["chest radiograph"]
    runner = next(w for n, w in viewer.window.dock_widgets.items() if "Run model" in n)
    assert runner.image_combo.currentText() == "chest radiograph"
    assert runner.selected_bundle().name == "radiograph_classifier"
