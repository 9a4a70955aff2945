"""The Annotate dock driven like a user: clicks give a preview, a negative click refines it, Accept puts
it into one label and keeps the others, Undo takes it back, slice tools are undo steps, Send to case store.
The clicks compute in the dock's worker process; a worker killed mid-run changes no layer."""

import hashlib
import os
import signal
from types import SimpleNamespace

import numpy as np
import pytest

from napari_medvision._napari.layers import image_layer_data, labels_layer_data
from napari_medvision._qt.interactive_widget import PREVIEW_LAYER, PROMPTS_LAYER, InteractiveWidget
from napari_medvision.core.backend import close_shared_backends
from napari_medvision.core.training import CaseStore
from napari_medvision.core.volume import Volume
from tests.core.test_interactive import blobs

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module", autouse=True)
def _workers_end_with_the_module():
    yield
    close_shared_backends()


@pytest.fixture
def dock(make_napari_viewer):
    viewer = make_napari_viewer()
    image, left, right = blobs()
    volume = Volume(image, spacing=(1.0, 1.0, 1.0), origin=(5.0, -3.0, 2.0))
    data, kwargs, _ = image_layer_data(volume, name="scan")
    viewer.add_image(data, **kwargs)
    other = np.zeros(image.shape, np.uint16)
    other[10:14, 20:28, 10:18] = 2               # label 2 overlaps the left ball: Accept must keep it
    data, kwargs, _ = labels_layer_data(volume.with_array(other), name="organs")
    viewer.add_labels(data, **kwargs)
    widget = InteractiveWidget(viewer)
    widget.labels_combo.setCurrentText("organs")
    return viewer, widget, left, right


def click(qtbot, widget, index, sign):
    widget.set_sign(sign)
    points = widget.viewer.layers[PROMPTS_LAYER]
    points.add(np.asarray(index, float))
    qtbot.waitUntil(lambda: PREVIEW_LAYER in widget.viewer.layers and widget.generation == widget._shown,
                    timeout=60000)
    return np.asarray(widget.viewer.layers[PREVIEW_LAYER].data)


def run_tool(qtbot, widget, name):
    """Start a slice tool and wait for its worker (the change lands on the GUI thread)."""
    worker = widget.apply_tool(name)
    assert worker is not None
    qtbot.waitUntil(lambda: widget.tool_worker is None, timeout=60000)
    return worker


def test_clicks_preview_accept_undo(dock, qtbot):
    viewer, widget, left, right = dock
    widget.new_structure()
    first = click(qtbot, widget, (12, 24, 14), "+")
    assert first[right].mean() > 0.5             # leaks into the look-alike neighbour
    assert list(viewer.layers[PROMPTS_LAYER].features["sign"]) == ["+"]
    second = click(qtbot, widget, (12, 24, 34), "-")
    assert second[right].mean() < 0.1 and second[left].mean() > 0.8
    labels = viewer.layers["organs"]
    before = np.asarray(labels.data).copy()
    widget.label_value.setValue(1)
    assert widget.accept()
    after = np.asarray(labels.data)
    assert (after == 2).sum() == (before == 2).sum()                 # the other label is kept
    assert ((after == 1) == (second.astype(bool) & (before == 0))).all()
    widget.undo()
    assert np.array_equal(np.asarray(labels.data), before)


def test_slice_tool_is_one_undo_step_and_case_store(dock, qtbot, tmp_path):
    viewer, widget, left, _ = dock
    labels = viewer.layers["organs"]
    data = np.asarray(labels.data)
    data[left] = 1
    data[12, 24, 14] = 0                         # a hole
    labels.data = data
    before = data.copy()
    widget.label_value.setValue(1)
    run_tool(qtbot, widget, "fill")
    assert labels.data[12, 24, 14] == 1
    widget.undo()
    assert np.array_equal(np.asarray(labels.data), before)
    worker = widget.send_to_store(str(tmp_path / "store"), case_id="blobs")
    qtbot.waitUntil(lambda: not widget.writes.busy, timeout=60000)
    assert worker is not None and CaseStore(tmp_path / "store").case_ids() == ["blobs"]


def test_box_from_rectangles_on_two_slices(dock, qtbot):
    """One rectangle is no box yet (it lies on one slice); a second on another slice makes one, alone it
    prompts a mask (no click needed) and the mask stays inside it; a new structure clears it."""
    from napari_medvision._qt.box_prompt import BOX_LAYER

    viewer, widget, left, right = dock
    widget.new_structure()
    shapes = widget.add_box()
    shapes.add_rectangles(np.array([[4, 15, 5], [4, 15, 23], [4, 33, 23], [4, 33, 5]], float))
    assert widget.prompts().box is None
    shapes.add_rectangles(np.array([[20, 17, 7], [20, 17, 21], [20, 31, 21], [20, 31, 7]], float))
    box = widget.prompts().box
    assert box.tolist() == [[4, 15, 5], [20, 33, 23]]
    qtbot.waitUntil(lambda: PREVIEW_LAYER in viewer.layers and widget.generation == widget._shown, timeout=60000)
    mask = np.asarray(viewer.layers[PREVIEW_LAYER].data).astype(bool)
    inside = np.zeros(mask.shape, bool)
    inside[4:21, 15:34, 5:24] = True
    assert mask.any() and not mask[~inside].any() and mask[left].mean() > 0.8
    widget.new_structure()
    assert BOX_LAYER not in viewer.layers and widget.prompts().box is None


def test_clicks_are_segmented_in_the_worker_process_not_the_viewers(dock, qtbot, monkeypatch):
    viewer, widget, left, _ = dock

    def not_here(*args, **kwargs):
        raise AssertionError("segmented in the viewer's process")

    monkeypatch.setattr("napari_medvision.core.interactive.job.segment_prompts", not_here)
    monkeypatch.setattr("napari_medvision.core.interactive.engine.segment_prompts", not_here)
    widget.new_structure()
    mask = click(qtbot, widget, (12, 24, 14), "+")
    assert mask[left].mean() > 0.8
    assert widget.backend.pid is not None and widget.backend.pid != os.getpid()


def layer_state(viewer, but=PROMPTS_LAYER):
    return [(layer.name, hashlib.sha1(np.ascontiguousarray(layer.data)).hexdigest())
            for layer in viewer.layers if layer.name != but]


def test_killing_the_worker_mid_click_changes_no_layer_and_the_next_click_restarts_it(dock, qtbot, monkeypatch):
    viewer, widget, left, right = dock
    errors = []
    monkeypatch.setattr("napari_medvision._qt.workers.show_error", errors.append)
    widget.new_structure()
    click(qtbot, widget, (12, 24, 14), "+")
    before, pid = layer_state(viewer), widget.backend.pid
    os.kill(pid, signal.SIGSTOP)   # frozen: the next click's job is surely in flight when it dies
    try:
        widget.set_sign("-")
        viewer.layers[PROMPTS_LAYER].add(np.asarray((12, 24, 34), float))
        qtbot.waitUntil(lambda: widget.backend.busy, timeout=30_000)
        qtbot.wait(200)
    finally:
        os.kill(pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    qtbot.wait(50)
    assert len(errors) == 1 and "compute worker stopped" in errors[0] and "\n" not in errors[0]
    assert layer_state(viewer) == before and widget._shown != widget.generation   # the old preview stays
    assert widget.restart_offer.isVisibleTo(widget) and widget.status.text().startswith("failed")
    mask = click(qtbot, widget, (12, 24, 14), "+")   # the next click starts a fresh worker
    assert widget.backend.pid not in (None, pid) and mask[left].mean() > 0.8 and mask[right].mean() < 0.1
    assert len(errors) == 1


def test_a_new_click_cancels_the_run_in_flight_and_only_the_latest_mask_lands(dock, qtbot, monkeypatch):
    viewer, widget, left, right = dock
    widget.new_structure()
    click(qtbot, widget, (12, 24, 14), "+")   # the worker is warm
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)   # and that click's run has ended
    cancels, landed, show = [], [], widget._show
    monkeypatch.setattr(widget.backend, "cancel", lambda: cancels.append(widget.generation))
    monkeypatch.setattr(widget, "_show", lambda mask, generation, layer: (
        landed.append(generation) if generation == widget.generation else None, show(mask, generation, layer)))
    points = viewer.layers[PROMPTS_LAYER]
    points.add(np.asarray((12, 24, 15), float))   # two clicks at once: the first one's run is stale
    widget.set_sign("-")
    points.add(np.asarray((12, 24, 34), float))
    qtbot.waitUntil(lambda: widget.generation == widget._shown and widget.worker is None, timeout=60_000)
    # the stale run was cancelled once the newest click came (the worker's own close of the job may
    # cancel a second time under load), and only the newest run's mask landed
    assert cancels and set(cancels) == {widget.generation} and landed == [widget.generation]
    mask = np.asarray(viewer.layers[PREVIEW_LAYER].data)
    assert mask[right].mean() < 0.1 and mask[left].mean() > 0.8   # the latest clicks' mask


def test_only_negative_clicks_left_drop_the_preview_with_one_notification(dock, qtbot, errors):
    viewer, widget, left, _ = dock
    widget.new_structure()
    click(qtbot, widget, (12, 24, 14), "+")
    widget.set_sign("-")
    points = viewer.layers[PROMPTS_LAYER]
    points.add(np.asarray((12, 24, 34), float))
    points.selected_data = {0}
    points.remove_selected()                                     # the + click is gone
    assert PREVIEW_LAYER not in viewer.layers and len(errors) == 1 and "only negative clicks" in errors[0]
    qtbot.wait(3000)                                             # the - click's run, now stale, ends
    assert PREVIEW_LAYER not in viewer.layers and len(errors) == 1 and widget.worker is None
    assert not widget.accept() and "no preview" in errors[-1]   # nothing stale to accept


def test_a_flat_or_outside_box_is_one_notification(dock, errors):
    viewer, widget, _, _ = dock
    widget.new_structure()
    shapes = widget.add_box()
    shapes.data = [np.array([[4, 15, 5], [4, 15, 5.2], [4, 15.2, 5.2], [4, 15.2, 5]], float),
                   np.array([[20, 15, 5], [20, 15, 5.2], [20, 15.2, 5.2], [20, 15.2, 5]], float)]
    assert errors and "zero size along x, y" in errors[-1] and PREVIEW_LAYER not in viewer.layers
    count = len(errors)
    shapes.data = [np.array([[4, 90, 90], [4, 90, 99], [4, 99, 99], [4, 99, 90]], float),
                   np.array([[9, 90, 90], [9, 90, 99], [9, 99, 99], [9, 99, 90]], float)]
    assert len(errors) > count and "outside the image" in errors[-1]


def test_a_run_for_a_closed_image_shows_nothing(dock, qtbot):
    viewer, widget, left, _ = dock
    widget.new_structure()
    image = viewer.layers["scan"]
    viewer.layers.remove("scan")
    widget._show(left.astype(np.uint8), widget.generation, image)   # its run comes back after
    assert PREVIEW_LAYER not in viewer.layers and "closed" in widget.status.text()


def test_accept_counts_what_it_wrote_and_a_preview_all_in_other_labels_is_refused(dock, qtbot, errors):
    viewer, widget, left, right = dock
    labels = viewer.layers["organs"]
    widget.new_structure()
    click(qtbot, widget, (12, 24, 14), "+")
    preview = np.asarray(viewer.layers[PREVIEW_LAYER].data).astype(bool)
    before = np.asarray(labels.data).copy()
    widget.label_value.setValue(1)
    assert widget.accept()
    written = int((preview & (before == 0)).sum())
    kept = int((preview & (before == 2)).sum())
    assert kept > 0 and f"accepted {written} voxels" in widget.status.text() and f"{kept} voxels" in widget.status.text()
    data = np.asarray(labels.data)
    data[:] = 3                                                  # every voxel another label now
    labels.data = data
    widget.new_structure()
    click(qtbot, widget, (12, 24, 14), "+")
    assert not widget.accept() and "nothing accepted" in errors[-1]
    assert np.all(np.asarray(labels.data) == 3) and PREVIEW_LAYER in viewer.layers


def test_a_tool_that_changes_nothing_says_so(dock, qtbot):
    viewer, widget, left, _ = dock
    labels = viewer.layers["organs"]
    widget.label_value.setValue(2)
    run_tool(qtbot, widget, "fill")                              # label 2 is a solid block: no holes
    assert "nothing to change (no undo step)" in widget.status.text()


def test_accept_waits_for_the_latest_click_and_stale_runs_are_dropped(dock, qtbot, errors):
    """Accept while the latest click still computes is refused (it would take the mask of the clicks
    before it), and a run in flight when Accept or New structure ends it never comes back as a preview."""
    viewer, widget, left, right = dock
    widget.new_structure()
    click(qtbot, widget, (12, 24, 14), "+")
    widget.set_sign("-")
    viewer.layers[PROMPTS_LAYER].add(np.array([12, 24, 34.0]))
    assert widget.worker is not None
    before = np.asarray(viewer.layers["organs"].data).copy()
    assert not widget.accept() and "not of your latest clicks" in errors[-1]
    assert np.array_equal(np.asarray(viewer.layers["organs"].data), before)
    qtbot.waitUntil(lambda: widget.generation == widget._shown, timeout=60000)
    # The preview is in but its worker has not sent "finished" yet (it did on a loaded CI machine):
    # that preview is of the latest clicks, so Accept takes it.
    widget.worker = widget.worker or SimpleNamespace(quit=lambda: None)
    assert widget.accept()
    widget.new_structure()
    widget.set_sign("+")
    viewer.layers[PROMPTS_LAYER].add(np.array([12, 24, 34.0]))
    assert widget.worker is not None
    widget.new_structure()                    # the run for that click is stale now
    qtbot.wait(3000)
    assert PREVIEW_LAYER not in viewer.layers and widget.prompts().clicks == 0


def test_slice_tool_runs_in_a_worker_and_keeps_edits_made_meanwhile(dock, qtbot, errors):
    viewer, widget, left, _ = dock
    labels = viewer.layers["organs"]
    data = np.asarray(labels.data)
    data[left] = 1
    data[12, 24, 14] = 0
    labels.data = data
    widget.label_value.setValue(1)
    worker = widget.apply_tool("fill")
    assert worker is not None and widget.apply_tool("smooth") is None and "still running" in errors[-1]
    labels.data_setitem((np.array([12]), np.array([24]), np.array([14])), 5)   # painted while it runs
    qtbot.waitUntil(lambda: widget.tool_worker is None, timeout=60000)
    assert labels.data[12, 24, 14] == 5 and "edited while the tool ran" in errors[-1]


@pytest.mark.parametrize("picture", ["2d", "rgb"])
def test_a_2d_or_rgb_picture_layer_is_annotated(make_napari_viewer, qtbot, errors, picture, tmp_path):
    """A 2D image layer (napari's own reader, ``add_image`` of a 2D array) and an RGB picture (the
    plugin's reader: ``(1, y, x, 3)``) take clicks, a box and Accept, and get a labels layer on their grid."""
    from napari.layers import Layer

    viewer = make_napari_viewer()
    yy, xx = np.mgrid[:40, :60]
    square = (np.abs(yy - 20) < 8) & (np.abs(xx - 30) < 8)
    rng = np.random.default_rng(0)
    grey = (120 * square + rng.normal(0, 5, square.shape)).clip(0, 255).astype(np.uint8)
    if picture == "2d":
        viewer.add_image(grey, name="xray", scale=(0.5, 0.7))
        index, grid = (20.0, 30.0), (40, 60)
    else:
        from PIL import Image as Picture

        from napari_medvision.core.io import read_volume

        Picture.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "x.png")
        viewer.add_layer(Layer.create(*image_layer_data(read_volume(tmp_path / "x.png"), "xray")))
        index, grid = (0.0, 20.0, 30.0), (1, 40, 60)
    widget = InteractiveWidget(viewer)
    widget.new_structure()
    shown = click(qtbot, widget, index, "+")
    # one click: the walker stops a pixel short of the blurred edge here (the whole image is its crop);
    # the box then gives the square
    assert shown.shape == grid and shown.reshape(40, 60)[square].mean() > 0.7
    shapes = widget.add_box()
    corners = np.array([[8, 18], [8, 42], [32, 42], [32, 18]], float)
    shapes.add_rectangles(corners if picture == "2d" else np.hstack([np.zeros((4, 1)), corners]))
    qtbot.waitUntil(lambda: widget.generation == widget._shown and widget.worker is None, timeout=60000)
    assert widget.prompts().box is not None
    assert widget.accept(), errors
    labels = viewer.layers["annotations"]
    assert labels.data.shape == grid and np.asarray(labels.data).reshape(40, 60)[square].mean() > 0.9
    run_tool(qtbot, widget, "smooth")
    assert not errors
