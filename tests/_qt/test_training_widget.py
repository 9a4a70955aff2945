"""The Fine-tune dock driven like a user: add cases, start, watch the plot, cancel, start again,
use and roll back versions, compare, auto-save."""

import json

import numpy as np
import pytest
from napari.layers import Layer

from napari_medvision._napari.layers import image_layer_data, labels_layer_data
from napari_medvision._napari.results import MODEL_OUTPUT_KEY
from napari_medvision._qt.training_widget import TrainingWidget
from napari_medvision.core.models import load_bundle
from napari_medvision.core.phantom import generate_phantom, shift_appearance
from tests.bundles import unet_bundle

pytestmark = pytest.mark.gui
TINY = dict(shape=(24, 48, 48), spacing=(8.0, 8.0, 12.0))


def organs(array):
    out = np.zeros_like(array)
    out[array == 3] = 1
    out[array == 2] = 2
    return out


@pytest.fixture
def widget(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    widget = TrainingWidget(viewer)
    widget.set_base_bundles([load_bundle(unet_bundle(tmp_path / "organs"))])
    widget.open_store(tmp_path / "store")
    return widget


def add_study(widget, seed):
    case = shift_appearance(generate_phantom(seed, **TINY))
    viewer = widget.viewer
    image = viewer.add_layer(Layer.create(*image_layer_data(case.image, f"ct{seed}")))
    predicted = organs(case.label.array)
    predicted[predicted == 1] = 0          # the "model" missed the liver...
    data, kwargs, kind = labels_layer_data(case.label.with_array(predicted), f"ct{seed} labels", {1: "liver", 2: "lung"})
    kwargs["metadata"][MODEL_OUTPUT_KEY] = predicted.copy()
    labels = viewer.add_layer(Layer.create(data, kwargs, kind))
    labels.data[organs(case.label.array) == 1] = 1   # ...and the user painted it back
    labels.refresh()
    widget.image_combo.setCurrentText(image.name)
    widget.labels_combo.setCurrentText(labels.name)
    return labels


def wait(qtbot, widget, timeout=240_000):
    """Until the dock's worker has finished (the dock drops it then)."""
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)
    qtbot.wait(50)


def test_cases_training_versions_and_rollback(widget, qtbot):
    for seed in (1, 2, 3):
        add_study(widget, seed)
        assert widget.add_case(f"case{seed}")
    store = widget.store
    assert store.case_ids() == ["case1", "case2", "case3"]
    assert store.read_edits("case1").array.sum() > 0, "the painted liver is recorded as an edit"
    widget.options["epochs"].value = 50
    widget.start()
    qtbot.waitUntil(lambda: len(widget.plot.dices) >= 1, timeout=240_000)
    assert widget.plot.losses
    widget.cancel()
    wait(qtbot, widget)
    assert widget.versions().versions() == []
    widget.options["epochs"].value = 2
    for _ in range(2):
        widget.start()
        wait(qtbot, widget)
    versions = widget.versions().versions()
    assert [v.name for v in versions] == ["v001", "v002"]
    assert widget.version_list.count() == 2
    widget.version_list.setCurrentRow(0)
    bundle = widget.use_selected_version()
    assert bundle.path.name == "v001"
    assert json.loads((widget.versions().root / "current.json").read_text()) == {"version": "v001"}
    assert (widget.versions().root / "v002" / "models" / "model.pt").is_file(), "rolling back deletes nothing"
    assert "in use" in widget.version_list.item(0).text()
    widget.compare("v001", "v002")
    wait(qtbot, widget)
    assert "compare v001" in widget.viewer.layers and "compare v002" in widget.viewer.layers
    assert widget.status.text().startswith("Dice v001 vs v002")


def test_autosave_writes_edited_labels(widget, qtbot):
    labels = add_study(widget, 5)
    labels.events.paint(value=None)    # what napari emits after a brush stroke
    written = widget.autosave()
    assert [p.name for p in written] == ["ct5_labels.nii.gz"]
    assert widget.autosave() == [], "nothing new to save"


def test_case_removal_and_reopen(widget, qtbot):
    add_study(widget, 7)
    widget.add_case("seven")
    widget.case_list.setCurrentRow(0)
    widget.open_selected_case()
    assert "seven" in widget.viewer.layers and "seven labels" in widget.viewer.layers
    widget.remove_selected_case()
    assert widget.store.case_ids() == [] and widget.case_list.count() == 0


def test_the_options_form_is_what_fine_tuning_gets(widget, monkeypatch):
    from napari_medvision._qt import training_widget

    seen = []
    monkeypatch.setattr(training_widget, "finetune", lambda bundle, store, versions, settings: seen.append(settings))
    monkeypatch.setattr(training_widget, "start_engine", lambda job, **handlers: None)   # nothing runs
    for name, value in {"epochs": 7, "max_minutes": 1.5, "correction_weight": 2.0, "keep_best_on_cancel": True}.items():
        widget.options[name].value = value
    widget.start()
    assert [(s.epochs, s.max_minutes, s.correction_weight, s.keep_best_on_cancel) for s in seen] == [(7, 1.5, 2.0, True)]
