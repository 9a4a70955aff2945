"""The Fine-tune dock's "Label next" table: a folder ranked in a worker, most uncertain first, cancel,
a click opens the study."""

import threading

import numpy as np
import pytest

from napari_medvision._qt.training_widget import TrainingWidget
from napari_medvision.core.io import write_volume
from napari_medvision.core.models import load_bundle
from napari_medvision.core.phantom import generate_phantom, shift_appearance
from tests.bundles import unet_bundle

pytestmark = pytest.mark.gui
SMALL = dict(shape=(16, 32, 32), spacing=(11.2, 11.2, 20.0))


@pytest.fixture
def dock(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    widget = TrainingWidget(viewer)
    widget.set_base_bundles([load_bundle(unet_bundle(tmp_path / "organs"))])
    for thread in threading.enumerate():   # see test_training_widget: the warm-up thread makes layers too
        if thread.name == "medvision-warm-up":
            thread.join(120)
    folder = tmp_path / "studies"
    folder.mkdir()
    for seed in range(3):
        case = generate_phantom(seed, **SMALL)
        write_volume(shift_appearance(case).image if seed == 1 else case.image, folder / f"study{seed}.nii.gz")
    (folder / "notes.txt").write_text("not a study")
    return widget, folder


def test_ranked_table_most_uncertain_first_and_a_click_opens_the_study(dock, qtbot, monkeypatch):
    import napari_medvision.core.interactive.rank as rank

    def not_here(*args, **kwargs):
        raise AssertionError("the model ran in the viewer's process")

    monkeypatch.setattr(rank, "rank_studies", not_here)  # the compute worker has its own copy
    widget, folder = dock
    panel = widget.label_next
    worker = panel.rank(folder)
    assert worker is not None and not panel.rank_button.isEnabled()
    with qtbot.waitSignal(worker.finished, timeout=300000):
        pass
    assert panel.table.rowCount() == 3 and panel.rank_button.isEnabled()
    scores = [float(panel.table.item(row, 1).text()) for row in range(3)]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    assert sorted(panel.table.item(row, 2).text() for row in range(3)) == [f"study{i}.nii.gz" for i in range(3)]
    first = panel.table.item(0, 2).text().split(".")[0]
    opener = panel.open_study(0)
    with qtbot.waitSignal(opener.finished, timeout=300000):
        pass
    layer = widget.viewer.layers[first]
    assert np.asarray(layer.data).shape == SMALL["shape"]


def test_cancel_stops_between_studies_and_a_bad_folder_is_named(dock, qtbot, tmp_path, monkeypatch):
    import napari_medvision._qt.label_next as module

    widget, folder = dock
    panel = widget.label_next
    errors = []
    monkeypatch.setattr(module, "report_error", errors.append)
    assert panel.rank(tmp_path / "missing") is None
    assert "not a folder" in str(errors[0])
    worker = panel.rank(folder)
    qtbot.waitUntil(lambda: panel.status.text().startswith("scoring study0"), timeout=300000)  # it computes
    panel.cancel()
    with qtbot.waitSignal(worker.finished, timeout=300000):
        pass
    assert panel.table.rowCount() == 0 and panel.rank_button.isEnabled()
