"""Bad inputs through the docks: one napari notification each (never a traceback), and layers,
cases and model versions exactly as they were."""

import hashlib

import numpy as np
import pytest
import SimpleITK as sitk
from napari.layers import Layer

from napari_medvision._napari.layers import image_layer_data, labels_layer_data
from napari_medvision._qt.inference_widget import InferenceWidget
from napari_medvision._qt.training_widget import TrainingWidget
from napari_medvision.core.models import load_bundle
from napari_medvision.core.phantom import generate_phantom
from tests.bundles import threshold_bundle, unet_bundle

pytestmark = pytest.mark.gui
TINY = dict(shape=(12, 24, 24), spacing=(8.0, 8.0, 10.0))


def snapshot(root):
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def wait(qtbot, widget):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    qtbot.wait(50)


def one_notification(errors, text):
    assert len(errors) == 1, errors
    assert text in errors[0] and "\n" not in errors[0] and "Traceback" not in errors[0]


# --- Run model ---------------------------------------------------------------------------------
@pytest.fixture
def runner(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_layer(Layer.create(*image_layer_data(generate_phantom(1, **TINY).image, "ct")))
    return viewer, InferenceWidget(viewer)


def _garbage_weights(folder):
    threshold_bundle(folder)
    (folder / "models" / "model.pt").write_bytes(np.random.default_rng(7).bytes(4096))
    return folder


def _garbage_torchscript(folder):
    threshold_bundle(folder)
    (folder / "models" / "model.pt").unlink()
    (folder / "models" / "model.ts").write_bytes(b"not a torchscript archive\n" * 40)
    return folder


@pytest.mark.parametrize("make, text", [
    (_garbage_weights, "'model.pt' is not a PyTorch weights file"),
    (_garbage_torchscript, "'model.ts' in bundle 'broken' is not a TorchScript model"),
])
def test_run_model_with_a_broken_bundle(runner, errors, qtbot, tmp_path, make, text):
    viewer, widget = runner
    widget.set_bundles([load_bundle(make(tmp_path / "broken"))])
    assert widget.run() is not None
    wait(qtbot, widget)
    one_notification(errors, text)
    assert [layer.name for layer in viewer.layers] == ["ct"]
    assert widget.status.text().startswith("failed") and widget.run_button.isEnabled()


# --- Fine-tune ---------------------------------------------------------------------------------
@pytest.fixture
def trainer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    widget = TrainingWidget(viewer)
    widget.set_base_bundles([load_bundle(unet_bundle(tmp_path / "organs"))])
    store = widget.open_store(tmp_path / "store")
    for seed in (1, 2):
        case = generate_phantom(seed, **TINY)
        store.add_case(f"c{seed}", case.image, case.label.with_array((case.label.array == 2).astype(np.uint8)))
    widget.refresh_cases()
    return viewer, widget, store


def _shift_label(store, case_id):
    path = store.label_path(case_id)
    label = sitk.ReadImage(str(path))
    label.SetOrigin(tuple(np.add(label.GetOrigin(), (7.0, 0.0, 0.0))))
    sitk.WriteImage(label, str(path))


def test_finetune_on_a_store_with_a_shifted_label(trainer, errors, qtbot):
    viewer, widget, store = trainer
    _shift_label(store, "c2")
    before = snapshot(store.root)
    assert widget.start() is not None
    wait(qtbot, widget)
    one_notification(errors, "labelsTr/c2.nii.gz' does not match the geometry of its image")
    assert "origin image" in errors[0]
    assert snapshot(store.root) == before and widget.versions().versions() == []
    assert widget.status.text() == "failed: cases and versions are unchanged"


def test_opening_a_case_whose_label_moved(trainer, errors):
    viewer, widget, store = trainer
    _shift_label(store, "c1")
    widget.case_list.setCurrentRow(0)
    widget.open_selected_case()
    one_notification(errors, "c1.nii.gz' does not match the geometry of its image")
    assert len(viewer.layers) == 0


def test_adding_a_case_on_another_grid(trainer, errors, qtbot):
    viewer, widget, store = trainer
    case = generate_phantom(3, **TINY)
    moved = case.label.with_array(case.label.array)
    moved.origin = tuple(np.add(moved.origin, (0.0, 0.0, 7.0)))
    viewer.add_layer(Layer.create(*image_layer_data(case.image, "ct3")))
    viewer.add_layer(Layer.create(*labels_layer_data(moved, "ct3 labels", {1: "liver", 2: "lung"})))
    widget.image_combo.setCurrentText("ct3")
    widget.labels_combo.setCurrentText("ct3 labels")
    before = snapshot(store.root)
    assert widget.add_case("c3") is not None      # written in a worker
    qtbot.waitUntil(lambda: not widget.writes.busy, timeout=60_000)
    one_notification(errors, "does not match the image's geometry: origin image")
    assert snapshot(store.root) == before and store.case_ids() == ["c1", "c2"]
    assert widget.status.text() == "case c3 was not saved"


def test_opening_a_store_with_a_broken_dataset_json(trainer, errors, tmp_path):
    viewer, widget, store = trainer
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "dataset.json").write_text("{labels: ")
    assert widget.open_store(broken) is None
    one_notification(errors, "dataset.json' cannot be read as JSON")
    assert widget.store is store and (broken / "dataset.json").read_text() == "{labels: "
