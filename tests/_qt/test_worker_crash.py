"""A compute worker killed in the middle of a run (as a segfault or the OOM killer would): the
viewer, its layers and the case store are as they were, the dock says so once and offers a
restart, and after it the dock runs again."""

import hashlib
import os
import signal
import threading

import numpy as np
import pytest
from napari.layers import Layer

from napari_medvision._napari.layers import image_layer_data, labels_layer_data
from napari_medvision._qt.inference_widget import InferenceWidget
from napari_medvision._qt.training_widget import TrainingWidget
from napari_medvision.core.models import find_model
from napari_medvision.core.phantom import LABELS, generate_phantom
from napari_medvision.core.training import CaseStore

pytestmark = pytest.mark.gui


def snapshot(root):
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def layer_state(viewer):
    return [(layer.name, hashlib.sha1(np.ascontiguousarray(layer.data)).hexdigest()) for layer in viewer.layers]


@pytest.fixture
def studio(make_napari_viewer, tmp_path):
    """A viewer with a study, an edited labels layer and a case store of one case."""
    viewer = make_napari_viewer()
    case = generate_phantom(8, shape=(64, 160, 160))
    viewer.add_layer(Layer.create(*image_layer_data(case.image, "ct")))
    labels = viewer.add_layer(Layer.create(*labels_layer_data(case.label, "ct labels",
                                                              {v: k for k, v in LABELS.items() if v})))
    labels.data[30, 70:90, 70:90] = 2   # an unsaved edit
    store = CaseStore.create(tmp_path / "store", LABELS)
    small = generate_phantom(9, shape=(16, 32, 32))
    store.add_case("first", small.image, small.label)
    for thread in threading.enumerate():   # the docks' warm-up makes layers too (pint registry race)
        if thread.name == "medvision-warm-up":
            thread.join(120)
    return viewer, store


def kill_when(qtbot, widget, started):
    qtbot.waitUntil(started, timeout=300_000)
    os.kill(widget.backend.pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    qtbot.wait(50)


def test_killing_the_worker_mid_run_loses_nothing_and_the_dock_restarts_it(studio, errors, qtbot):
    viewer, store = studio
    widget = InferenceWidget(viewer)
    widget.set_bundles([find_model("ct_organs_unet")])
    widget.image_combo.setCurrentText("ct")
    widget.tta_check.setChecked(True)
    widget.batch_spin.setValue(1)
    layers, cases = layer_state(viewer), snapshot(store.root)
    assert widget.run() is not None
    kill_when(qtbot, widget, lambda: "sliding window" in widget.progress.format())

    assert len(errors) == 1 and "compute worker stopped" in errors[0] and "\n" not in errors[0]
    assert layer_state(viewer) == layers and snapshot(store.root) == cases
    assert widget.status.text().startswith("failed") and widget.run_button.isEnabled()
    assert widget.restart_offer.isVisibleTo(widget)

    restart = widget.restart_offer.restart()
    qtbot.waitUntil(lambda: restart.is_running is False, timeout=60_000)
    assert not widget.restart_offer.isVisibleTo(widget)
    widget.tta_check.setChecked(False)
    widget.batch_spin.setValue(0)
    widget.run()
    qtbot.waitUntil(lambda: "ct_organs_unet labels" in viewer.layers, timeout=300_000)
    assert viewer.layers["ct_organs_unet labels"].data.shape == viewer.layers["ct"].data.shape
    assert len(errors) == 1


def test_killing_the_worker_mid_fine_tune_leaves_cases_and_versions(studio, errors, qtbot):
    viewer, store = studio
    widget = TrainingWidget(viewer)
    widget.set_base_bundles([find_model("ct_organs_unet")])
    small = generate_phantom(10, shape=(16, 32, 32))
    store.add_case("second", small.image, small.label)
    widget.open_store(store.root)
    before = snapshot(store.root)
    assert widget.start() is not None
    kill_when(qtbot, widget, lambda: widget.progress.value() > 0)

    assert len(errors) == 1 and "compute worker stopped" in errors[0]
    assert snapshot(store.root) == before and widget.version_list.count() == 0
    assert widget.restart_offer.isVisibleTo(widget) and widget.start_button.isEnabled()
