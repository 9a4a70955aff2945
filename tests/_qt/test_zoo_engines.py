"""The Annotate dock runs interactive bundles from its engine list like its own engines: a zoo bundle
added from a folder (its findings and the Run-model dock's Trust tick; untrusted it does not run), the
label the clicks are for, the clicks computed in the dock's worker process; a fine-tuned version of the
click model appears in the list when the Fine-tune dock writes it."""

import numpy as np
import pytest

from napari_medvision._qt.interactive_widget import PREVIEW_LAYER, PROMPTS_LAYER
from napari_medvision._qt.trust_view import TRUST_TEXT
from napari_medvision._qt.zoo_engines import KINDS
from napari_medvision.core.backend import close_shared_backends
from napari_medvision.core.models import trust_store
from tests.core.interactive.test_bundle_engines import click_model_version
from tests.zoo_bundles import deepedit_bundle

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module", autouse=True)
def _workers_end_with_the_module():
    yield
    close_shared_backends()


def make_dock(make_napari_viewer):
    from napari_medvision._napari.layers import image_layer_data
    from napari_medvision._qt.interactive_widget import InteractiveWidget
    from napari_medvision.core.volume import Volume
    from tests.core.test_interactive import blobs

    viewer = make_napari_viewer()
    image, left, _ = blobs()
    data, kwargs, _ = image_layer_data(Volume(image, spacing=(1.0, 1.0, 2.0), origin=(5.0, -3.0, 2.0)), name="scan")
    viewer.add_image(data, **kwargs)
    return viewer, InteractiveWidget(viewer), left


def test_an_added_deepedit_bundle_needs_the_trust_tick_then_runs_in_the_worker(make_napari_viewer, qtbot, tmp_path,
                                                                               errors):
    viewer, widget, _ = make_dock(make_napari_viewer)
    builtin = widget.engine_combo.count()
    entry = widget.add_engine(deepedit_bundle(tmp_path / "probe", probe=True), select=True)
    assert entry.kind == "deepedit" and widget.engine_combo.count() == builtin + 1
    assert widget.engine_combo.currentText() == f"probe ({KINDS['deepedit']})"
    engines = widget.bundle_engines
    assert [engines.label_combo.itemText(i) for i in range(engines.label_combo.count())] == ["organ"]
    assert not engines.label_caption.isHidden()
    widget.engine_combo.setCurrentIndex(0)                       # a built-in engine: no label row at all
    assert engines.label_caption.isHidden() and engines.label_combo.isHidden()
    widget.engine_combo.setCurrentIndex(builtin)
    assert not engines.label_caption.isHidden() and engines.label_combo.count() == 1
    qtbot.waitUntil(lambda: engines.trust_check.isEnabled(), timeout=60_000)
    assert "scripts.transforms" in engines.trust_label.text() and not engines.trust_check.isChecked()
    assert engines.trust_check.text() == TRUST_TEXT

    widget.new_structure()
    viewer.layers[PROMPTS_LAYER].add(np.asarray((12, 24, 14), float))
    assert widget.worker is None and PREVIEW_LAYER not in viewer.layers          # nothing ran
    assert len(errors) == 1 and "runs its own code" in errors[0] and TRUST_TEXT in errors[0]

    engines.trust_check.setChecked(True)
    viewer.layers[PROMPTS_LAYER].add(np.asarray((12, 24, 16), float))
    qtbot.waitUntil(lambda: PREVIEW_LAYER in viewer.layers and widget.generation == widget._shown, timeout=120_000)
    mask = np.asarray(viewer.layers[PREVIEW_LAYER].data)
    centre = np.argwhere(mask).mean(0)           # the probe's mask: the guidance blob around the two clicks
    assert mask[12, 24, 15] == 1 and np.abs(centre - (12, 24, 15)).max() <= 2.5
    assert widget.backend.pid is not None and len(errors) == 1
    assert [r["name"] for r in trust_store.trusted_bundles()] == ["probe"]   # remembered, as the Run-model dock does


def test_a_folder_that_takes_no_clicks_is_refused(make_napari_viewer, tmp_path, errors):
    from tests.bundles import threshold_bundle

    _, widget, _ = make_dock(make_napari_viewer)
    count = widget.engine_combo.count()
    assert widget.add_engine(threshold_bundle(tmp_path / "plain"), select=True) is None
    assert widget.engine_combo.count() == count and "not an interactive one" in errors[-1]


def test_versions_in_the_case_store_are_listed_and_run(make_napari_viewer, qtbot, tmp_path):
    viewer, widget, left = make_dock(make_napari_viewer)
    click_model_version(tmp_path / "store")
    widget.store_edit.setText(str(tmp_path / "store"))
    widget.store_edit.editingFinished.emit()
    text = f"interactive_unet v001 ({KINDS['interactive']})"
    qtbot.waitUntil(lambda: widget.engine_combo.findText(text) >= 0, timeout=30_000)   # listed in a worker
    widget.engine_combo.setCurrentText(text)
    qtbot.waitUntil(lambda: "no trust needed" in widget.bundle_engines.trust_label.text(), timeout=60_000)
    assert widget.bundle_engines.device_combo.isHidden()       # a click-model version runs on the CPU
    widget.new_structure()
    viewer.layers[PROMPTS_LAYER].add(np.asarray((12, 24, 14), float))
    qtbot.waitUntil(lambda: PREVIEW_LAYER in viewer.layers and widget.generation == widget._shown, timeout=120_000)
    assert np.asarray(viewer.layers[PREVIEW_LAYER].data)[left].mean() > 0.5


def test_the_device_row_is_for_zoo_bundles_and_a_missing_gpu_is_one_notification(make_napari_viewer, qtbot,
                                                                                 tmp_path, errors):
    import torch

    viewer, widget, _ = make_dock(make_napari_viewer)
    engines = widget.bundle_engines
    assert engines.device_combo.isHidden()                       # built-in engines run on the CPU
    widget.add_engine(deepedit_bundle(tmp_path / "probe", probe=True), select=True)
    assert not engines.device_combo.isHidden() and not engines.device_caption.isHidden()
    qtbot.waitUntil(lambda: engines.trust_check.isEnabled(), timeout=60_000)
    engines.trust_check.setChecked(True)
    engines.device_combo.setCurrentText("cpu")
    assert engines.job_options()["device"] == "cpu"
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: forcing cuda would run")
    engines.device_combo.setCurrentText("cuda")
    widget.new_structure()
    viewer.layers[PROMPTS_LAYER].add(np.asarray((12, 24, 14), float))
    qtbot.waitUntil(lambda: len(errors) == 1, timeout=120_000)
    assert "CUDA" in errors[0] and PREVIEW_LAYER not in viewer.layers
    engines.device_combo.setCurrentText("auto")                  # the same click on the CPU
    widget.run()
    qtbot.waitUntil(lambda: PREVIEW_LAYER in viewer.layers and widget.generation == widget._shown, timeout=120_000)
    assert len(errors) == 1
