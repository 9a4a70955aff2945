"""The Run-model dock's default run takes the CLI's fast path: labels on the model grid (no exact
postprocessing) and ``backend="auto"`` (an exported CPU engine only where measured faster)."""

import numpy as np
import pytest
from napari.layers import Labels, Layer

from napari_medvision._napari.layers import image_layer_data
from napari_medvision._qt.inference_widget import InferenceWidget
from napari_medvision.core.backend import InProcessBackend
from napari_medvision.core.inference import fast_labels
from napari_medvision.core.inference import run as run_module
from napari_medvision.core.models import load_bundle
from napari_medvision.core.phantom import generate_phantom
from tests.bundles import unet_bundle

pytestmark = pytest.mark.gui


def test_default_run_uses_auto_backend_and_fast_labels(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    viewer = make_napari_viewer()
    case = generate_phantom(4, shape=(20, 48, 48), spacing=(6.0, 6.0, 10.0), direction=np.diag([1.0, -1.0, 1.0]))
    viewer.add_layer(Layer.create(*image_layer_data(case.image, "phantom")))
    widget = InferenceWidget(viewer)
    widget.backend = InProcessBackend()  # compute here, where the calls can be watched
    seen, maps = [], []
    real_run, real_map = run_module.run_model, fast_labels.label_map
    monkeypatch.setattr(run_module, "run_model", lambda *a, **k: seen.append(k) or real_run(*a, **k))
    monkeypatch.setattr(fast_labels, "label_map", lambda *a, **k: maps.append(1) or real_map(*a, **k))
    widget.set_bundles([load_bundle(unet_bundle(tmp_path / "u"))])
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120000)
    assert seen and seen[0]["backend"] == "auto" and not seen[0].get("exact_postprocessing")
    assert maps == [1]
    # the dock adds result layers one per turn of the event loop, after its worker has ended
    qtbot.waitUntil(lambda: len(viewer.layers) == 2, timeout=10000)
    assert [type(x) for x in viewer.layers] == [type(viewer.layers[0]), Labels]
