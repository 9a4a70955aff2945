"""The Run-model dock with other model kinds: "Add model..." imports, nnU-Net models get a layer per channel."""

import json

import pytest
from napari.layers import Layer

from napari_medvision._napari.layers import image_layer_data
from napari_medvision._qt.add_model_dialog import AddModelDialog
from napari_medvision._qt.inference_widget import InferenceWidget
from napari_medvision.core.models import load_nnunet
from napari_medvision.core.phantom import generate_phantom
from tests.bundles import unet_bundle

pytestmark = pytest.mark.gui


@pytest.fixture
def widget(make_napari_viewer):
    viewer = make_napari_viewer()
    case = generate_phantom(4, shape=(12, 32, 32), spacing=(6.0, 6.0, 10.0))
    for name in ("t1", "t2"):
        viewer.add_layer(Layer.create(*image_layer_data(case.image, name)))
    return InferenceWidget(viewer)


def test_add_model_dialog_imports_a_bundle_in_a_worker(widget, qtbot, tmp_path):
    dialog = AddModelDialog(widget, destination=tmp_path / "models")
    dialog.source.setText(str(unet_bundle(tmp_path / "organs")))
    dialog.name.setText("organs_copy")
    worker = dialog.accept_import()
    assert worker is not None
    qtbot.waitUntil(lambda: dialog.imported is not None, timeout=60000)
    assert (tmp_path / "models" / "organs_copy" / "configs" / "inference.json").is_file()
    added = widget.add_model(dialog.imported)
    assert added.kind == "bundle" and widget.model_combo.currentText() == "organs_copy (segmentation)"


def test_bare_network_fields_become_import_facts(widget, tmp_path):
    dialog = AddModelDialog(widget)
    dialog.source.setText(str(tmp_path / "net.onnx"))
    dialog.labels.setText("1=liver,2=spleen")
    dialog.patch.setText("96 96 64")
    dialog.normalisation.setCurrentIndex(1)
    dialog.range.setText("-57,164")
    facts = dialog.facts()
    assert facts.labels == {1: "liver", 2: "spleen"} and facts.patch_size == (96, 96, 64)
    assert facts.window == (-57.0, 164.0) and facts.percentiles is None


def test_multichannel_nnunet_model_gets_one_layer_choice_per_channel(widget, tmp_path):
    folder = tmp_path / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"")  # listing never reads checkpoints
    (folder / "plans.json").write_text(json.dumps({"dataset_name": "Dataset002_Brain", "configurations": {
        "3d_fullres": {"patch_size": [64, 64, 64]}}}))
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T1", "1": "T2"},
                                                     "labels": {"background": 0, "tumour": 1}}))
    widget.set_bundles([load_nnunet(folder)])
    assert widget.model_combo.currentText() == f"{folder.name} (nnunet segmentation)"
    assert [widget.channel_form.itemAt(i, widget.channel_form.LabelRole).widget().text()
            for i in range(widget.channel_form.rowCount())] == ["T1", "T2"]
    assert [c.currentText() for c in widget.channel_combos] == ["t1", "t2"]
    assert widget.tta_check.isChecked()  # nnU-Net's default: mirroring on
    assert widget.channel_box.isVisibleTo(widget)
