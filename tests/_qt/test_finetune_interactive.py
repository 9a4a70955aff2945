"""The Fine-tune dock fine-tunes the click model like any model: offered in its model list, trained in
the dock's worker process with progress and versions, and the new version appears as an engine of the
Annotate dock."""

import threading

import pytest

from napari_medvision._qt.interactive_widget import InteractiveWidget
from napari_medvision._qt.training_widget import TrainingWidget
from napari_medvision._qt.zoo_engines import KINDS
from napari_medvision.core.backend import close_shared_backends
from tests.core.interactive.test_finetune_corrections import two_balls_store

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module", autouse=True)
def _workers_end_with_the_module():
    yield
    close_shared_backends()


def test_the_click_model_fine_tunes_in_the_dock_and_its_version_is_an_annotate_engine(make_napari_viewer, qtbot,
                                                                                      tmp_path, errors):
    viewer = make_napari_viewer()
    annotate = InteractiveWidget(viewer)
    viewer.window.add_dock_widget(annotate, name="Annotate")
    widget = TrainingWidget(viewer)
    for thread in threading.enumerate():      # the dock's warm-up thread (see test_training_widget)
        if thread.name == "medvision-warm-up":
            thread.join(120)
    names = [widget.model_combo.itemText(i) for i in range(widget.model_combo.count())]
    assert "interactive_unet" in names
    widget.model_combo.setCurrentText("interactive_unet")
    two_balls_store(tmp_path / "store")
    widget.open_store(tmp_path / "store")
    widget.options["epochs"].value = 1
    widget.options["max_minutes"].value = 0.1   # stops after the step past 6 s, then validates and writes
    assert widget.start() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=240_000)
    assert errors == []
    assert widget.plot.losses and widget.status.text().startswith("wrote v001")
    assert widget.versions().root == tmp_path / "store" / "models" / "interactive_unet"
    assert widget.version_list.count() == 1
    assert annotate.engine_combo.findText(f"interactive_unet v001 ({KINDS['interactive']})") >= 0
