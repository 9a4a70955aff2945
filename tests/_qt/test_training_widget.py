"""The Fine-tune dock driven like a user: add cases, start, watch the plot, cancel, start again,
use, roll back and delete versions, compare, auto-save; writes never hold up the GUI thread."""

import json
import threading

import numpy as np
import pytest
from napari.layers import Layer

from napari_medvision._napari.layers import image_layer_data, labels_layer_data
from napari_medvision._napari.results import MODEL_OUTPUT_KEY
from napari_medvision._qt.training_widget import TrainingWidget
from napari_medvision.core.io import read_volume
from napari_medvision.core.models import load_bundle
from napari_medvision.core.phantom import generate_phantom, shift_appearance
from napari_medvision.core.training import CaseStore
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
    # The dock's one-off warm-up thread creates napari layers; creating ours at the same time
    # races in pint's unit registry ('pixel' is not defined). Reported; not this test's subject.
    for thread in threading.enumerate():
        if thread.name == "medvision-warm-up":
            thread.join(120)
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


def save_case(qtbot, widget, name):
    """Add a case and wait for its worker to write it."""
    assert widget.add_case(name) is not None
    qtbot.waitUntil(lambda: not widget.writes.busy, timeout=60_000)
    qtbot.wait(20)


def wait(qtbot, widget, timeout=240_000):
    """Until the dock's worker has finished (the dock drops it then)."""
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)
    qtbot.wait(50)


def test_cases_training_versions_and_rollback(widget, qtbot, monkeypatch):
    errors = []
    monkeypatch.setattr("napari_medvision._qt.workers.show_error", errors.append)
    for seed in (1, 2, 3):
        add_study(widget, seed)
        save_case(qtbot, widget, f"case{seed}")
    store = widget.store
    assert store.case_ids() == ["case1", "case2", "case3"]
    assert [widget.case_list.item(i).text() for i in range(3)] == ["case1", "case2", "case3"]
    assert store.read_edits("case1").array.sum() > 0, "the painted liver is recorded as an edit"
    widget.options["epochs"].value = 50
    widget.start()
    qtbot.waitUntil(lambda: len(widget.plot.dices) >= 1, timeout=240_000)
    assert widget.plot.losses
    widget.cancel()
    wait(qtbot, widget)
    assert widget.versions().versions() == []
    widget.options["epochs"].value = 2
    widget.start()
    wait(qtbot, widget)
    widget.version_list.setCurrentRow(0)
    assert widget.use_selected_version().path.name == "v001"
    widget.start()                      # fine-tunes the version in use
    wait(qtbot, widget)
    versions = widget.versions()
    assert [v.name for v in versions.versions()] == ["v001", "v002"]
    assert versions.get(2).parent == versions.root / "v001"
    assert widget.version_list.count() == 2 and "in use" in widget.version_list.item(0).text()
    widget.version_list.setCurrentRow(1)
    widget.use_selected_version()
    assert json.loads((versions.root / "current.json").read_text()) == {"version": "v002"}
    assert widget.rollback().path.name == "v001", "roll back goes to the parent"
    assert widget.status.text() == "v001 is in use"
    assert (versions.root / "v002" / "models" / "model.pt").is_file(), "rolling back deletes nothing"
    widget.compare("v001", "v002")
    wait(qtbot, widget)
    assert "compare v001" in widget.viewer.layers and "compare v002" in widget.viewer.layers
    assert widget.status.text().startswith("Dice v001 vs v002")
    widget.version_list.setCurrentRow(0)
    assert not widget.delete_selected_version() and "v001 is in use" in errors[-1]
    widget.version_list.setCurrentRow(1)
    assert widget.delete_selected_version()
    assert [v.name for v in versions.versions()] == ["v001"] and widget.version_list.count() == 1
    assert widget.rollback().path == widget.base_bundle().path, "v001's parent is the base model"
    assert widget.current_bundle().path == widget.base_bundle().path


def test_adding_a_case_returns_before_the_write_and_the_case_appears_after(widget, qtbot, monkeypatch):
    labels = add_study(widget, 4)
    painted = np.asarray(labels.data).copy()
    release, writers = threading.Event(), []
    original = CaseStore.add_case

    def slow_add_case(store, *args, **kwargs):
        writers.append(threading.current_thread())
        assert release.wait(60)
        return original(store, *args, **kwargs)

    monkeypatch.setattr(CaseStore, "add_case", slow_add_case)
    assert widget.add_case("four") is not None
    assert widget.store.case_ids() == [] and widget.case_list.count() == 0 and widget.writes.busy
    qtbot.waitUntil(lambda: bool(writers), timeout=10_000)
    assert writers[0] is not threading.main_thread(), "compressing NIfTI runs in a worker"
    labels.data[:] = 0                  # the user keeps painting while the case is written
    assert widget.start() is None, "no fine-tuning while a case is still being written"
    release.set()
    qtbot.waitUntil(lambda: widget.case_list.count() == 1, timeout=60_000)
    assert widget.store.case_ids() == ["four"]
    _, label = widget.store.read_case("four")
    np.testing.assert_array_equal(label.array, painted)


def test_autosave_writes_edited_labels_in_a_worker(widget, qtbot, monkeypatch):
    import napari_medvision._qt.saving as saving

    labels = add_study(widget, 5)
    labels.events.paint(value=None)    # what napari emits after a brush stroke
    release, original = threading.Event(), saving.write_volume

    def slow_write(*args, **kwargs):
        assert release.wait(60)
        return original(*args, **kwargs)

    monkeypatch.setattr(saving, "write_volume", slow_write)
    assert widget.autosave() is not None
    target = widget.store.root / "autosave" / "ct5_labels.nii.gz"
    assert not target.exists() and widget.writes.busy, "the handler returned before the write"
    release.set()
    qtbot.waitUntil(lambda: not widget.writes.busy, timeout=60_000)
    assert widget.autosaver.last_written == [target]
    np.testing.assert_array_equal(read_volume(target).array, np.asarray(labels.data))
    assert widget.autosave() is None, "nothing new to save"


def test_case_removal_and_reopen(widget, qtbot):
    add_study(widget, 7)
    save_case(qtbot, widget, "seven")
    widget.case_list.setCurrentRow(0)
    widget.open_selected_case()
    assert "seven" in widget.viewer.layers and "seven labels" in widget.viewer.layers
    widget.remove_selected_case()
    assert widget.store.case_ids() == [] and widget.case_list.count() == 0


def test_the_options_form_is_what_fine_tuning_gets(widget, monkeypatch):
    from napari_medvision._qt import training_widget

    seen = []
    monkeypatch.setattr(widget.backend, "finetune", lambda bundle, store, versions, settings: seen.append(settings))
    monkeypatch.setattr(training_widget, "start_engine", lambda job, **handlers: None)   # nothing runs
    for name, value in {"epochs": 7, "max_minutes": 1.5, "correction_weight": 2.0, "keep_best_on_cancel": True}.items():
        widget.options[name].value = value
    widget.start()
    assert [(s.epochs, s.max_minutes, s.correction_weight, s.keep_best_on_cancel) for s in seen] == [(7, 1.5, 2.0, True)]


def test_a_case_refused_in_the_worker_is_reported_and_not_listed(widget, qtbot, monkeypatch):
    errors = []
    monkeypatch.setattr("napari_medvision._qt.workers.show_error", errors.append)
    add_study(widget, 6)
    save_case(qtbot, widget, "has space")          # spaces become '_': accepted
    save_case(qtbot, widget, "../escape")          # refused by the case store, in the worker
    assert widget.store.case_ids() == ["has_space"] and widget.case_list.count() == 1
    assert "may use only letters" in errors[-1] and widget.status.text() == "case ../escape was not saved"
