"""The docks' "Compute on: MONAI Label server": against real servers (skip without .venv-monailabel) and,
for the failures (unreachable, 401, unknown model, lost connection, cancel mid-request), a stand-in
HTTP server in the test."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from napari.layers import Image, Labels, Layer

from napari_medvision._napari.layers import image_layer_data, layer_volume
from napari_medvision._qt.compute_target import LOCAL, SERVER
from napari_medvision._qt.inference_widget import InferenceWidget
from napari_medvision._qt.training_widget import TrainingWidget
from napari_medvision.core.phantom import generate_phantom, write_phantom_dataset
from napari_medvision.core.remote.backend import MonaiLabelBackend, ServerModel
from napari_medvision.core.remote.monailabel import MonaiLabelClient
from tests.monailabel_server import free_port

pytestmark = pytest.mark.gui
TOKEN = "s3cret-token-never-shown"
INFO = {"models": {"segmentation_spleen": {"type": "segmentation", "labels": {"spleen": 1}}},
        "trainers": {}, "strategies": {"random": {}}}


@pytest.fixture
def phantom():
    return generate_phantom(4, shape=(20, 48, 48), spacing=(6.0, 6.0, 10.0), direction=np.diag([1.0, -1.0, 1.0]))


@pytest.fixture
def runner(make_napari_viewer, phantom):
    viewer = make_napari_viewer()
    viewer.add_layer(Layer.create(*image_layer_data(phantom.image, "phantom")))
    return viewer, InferenceWidget(viewer)


def connect(qtbot, dock, url, token=""):
    dock.target.where.setCurrentText(SERVER)
    dock.target.url_edit.setText(url)
    dock.target.token_edit.setText(token)
    assert dock.target.connect_server() is not None
    qtbot.waitUntil(lambda: dock.target.worker is None, timeout=60_000)
    qtbot.wait(20)


def wait(qtbot, dock):
    qtbot.waitUntil(lambda: dock.worker is None, timeout=120_000)
    qtbot.wait(50)


def one_notification(errors, *texts):
    assert len(errors) == 1, errors
    assert all(text in errors[0] for text in texts) and "\n" not in errors[0], errors[0]
    assert TOKEN not in errors[0]


# --- a stand-in server for the failures -----------------------------------------------------------
class StandIn:
    """An HTTP server answering ``status`` (401...) or MONAI Label's /info/; /infer/ waits ``infer_seconds``."""

    def __init__(self, status: int = 200, infer_seconds: float = 0.0):
        stand_in = self
        self.status, self.infer_seconds, self.seen_tokens = status, infer_seconds, []

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                stand_in.seen_tokens.append(self.headers.get("Authorization"))
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if self.path.startswith("/infer/"):
                    time.sleep(stand_in.infer_seconds)
                body = json.dumps(INFO if stand_in.status == 200 else {"detail": "Unauthorized"}).encode()
                self.send_response(stand_in.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _answer  # noqa: N815 (http.server's names)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_in():
    started = []
    yield lambda **kwargs: started.append(StandIn(**kwargs)) or started[-1]
    for server in started:
        server.stop()


def test_an_unreachable_server_is_one_notification_and_local_models_come_back(runner, qtbot, errors):
    viewer, dock = runner
    local = [model.name for model in dock.bundles]
    connect(qtbot, dock, f"http://127.0.0.1:{free_port()}")
    one_notification(errors, "cannot reach")
    assert not isinstance(dock.backend, MonaiLabelBackend) and "not connected" in dock.target.server_status.text()
    dock.target.where.setCurrentText(LOCAL)
    assert [model.name for model in dock.bundles] == local and [layer.name for layer in viewer.layers] == ["phantom"]


def test_a_refused_token_is_401_and_never_shown(runner, qtbot, errors, stand_in):
    viewer, dock = runner
    server = stand_in(status=401)
    connect(qtbot, dock, server.url, token=TOKEN)
    one_notification(errors, "401", "refused")
    assert server.seen_tokens == [f"Bearer {TOKEN}"]                # sent as a header, and only there
    assert TOKEN not in dock.target.server_status.text() + repr(dock.backend) + dock.status.text()


def test_a_model_the_server_does_not_have_changes_no_layer(runner, qtbot, errors, stand_in):
    viewer, dock = runner
    server = stand_in()
    connect(qtbot, dock, server.url)
    assert isinstance(dock.backend, MonaiLabelBackend) and [m.name for m in dock.bundles] == ["segmentation_spleen"]
    dock.set_bundles([ServerModel("liver_nope", "segmentation", {1: "liver"}, server.url)])
    dock.run()
    wait(qtbot, dock)
    one_notification(errors, "no model 'liver_nope'", "segmentation_spleen")
    assert [layer.name for layer in viewer.layers] == ["phantom"]


def test_a_lost_connection_is_one_notification(runner, qtbot, errors, stand_in):
    viewer, dock = runner
    server = stand_in()
    connect(qtbot, dock, server.url)
    server.stop()
    dock.backend.restart()                       # forget the model list read while it was up
    dock.run()
    wait(qtbot, dock)
    one_notification(errors, "cannot reach", server.url)
    assert [layer.name for layer in viewer.layers] == ["phantom"] and "no layer was changed" in dock.status.text()


def test_cancel_ends_a_run_waiting_on_the_server_at_once(runner, qtbot, errors, stand_in):
    viewer, dock = runner
    server = stand_in(infer_seconds=8.0)
    connect(qtbot, dock, server.url)
    dock.run()
    qtbot.waitUntil(lambda: "running on" in dock.progress.format(), timeout=20_000)
    qtbot.wait(300)                              # the upload is on the wire, the server "computing"
    start = time.monotonic()
    dock.cancel()
    wait(qtbot, dock)
    assert time.monotonic() - start < 3.0, "Cancel waited for the server's answer"
    assert errors == [] and [layer.name for layer in viewer.layers] == ["phantom"]


# --- real servers -----------------------------------------------------------------------------------
def test_run_on_the_server_gives_layers_on_the_studys_grid(runner, qtbot, errors, monaibundle_server, phantom):
    viewer, dock = runner
    connect(qtbot, dock, monaibundle_server)
    assert [model.name for model in dock.bundles] == ["ct_organs_unet"] and errors == []
    assert dock.device_combo.isHidden() and dock.overlap_spin.isHidden()   # the server's app decides them
    dock.run()
    wait(qtbot, dock)
    assert errors == []
    labels = viewer.layers["ct_organs_unet labels"]
    assert isinstance(labels, Labels) and labels.data.shape == phantom.image.shape
    np.testing.assert_allclose(labels.affine.affine_matrix, viewer.layers["phantom"].affine.affine_matrix)
    result = layer_volume(labels)
    assert result.spacing == phantom.image.spacing and result.origin == phantom.image.origin
    assert np.mean(result.array == phantom.label.array) > 0.9         # the shipped model's own answer
    assert dock.table.item(0, 1).text().endswith("mL") and dock.progress.value() == dock.progress.maximum()
    dock.target.where.setCurrentText(LOCAL)
    assert not isinstance(dock.backend, MonaiLabelBackend) and "ct_organs_unet" in [m.name for m in dock.bundles]
    assert not dock.device_combo.isHidden()


def test_finetune_dock_uploads_trains_on_the_server_and_cancels(make_napari_viewer, qtbot, errors, tmp_path,
                                                                monailabel_server):
    dock = TrainingWidget(make_napari_viewer())
    connect(qtbot, dock, monailabel_server)
    assert [model.name for model in dock.base_bundles] == ["segmentation_spleen"] and dock.versions() is None
    store = write_phantom_dataset(tmp_path / "cases", cases=2, seed=1, shape=(16, 32, 32), spacing=(6.0, 6.0, 8.0))
    dock.open_store(store.root)
    client = MonaiLabelClient(monailabel_server)
    seen = []
    dock.show_progress = lambda step: (seen.append(step), type(dock).show_progress(dock, step))
    try:
        dock.start()
        qtbot.waitUntil(lambda: any("training on the server" in str(step) for step in seen), timeout=60_000)
        assert "training on the server" in dock.status.text()
        dock.cancel()
        wait(qtbot, dock)
        assert errors == [] and "cancelled" in dock.status.text()
        for case in store.case_ids():                # each case's corrected label went up (PUT /datastore/label)
            client._request("HEAD", "/datastore/label", "a label", params={"image": case, "tag": "final"})
        qtbot.waitUntil(lambda: (client.train_status() or {}).get("status") != "RUNNING", timeout=30_000)
    finally:
        for case in store.case_ids():                # the session's server trains on its datastore later
            client.remove_image(case)


def test_next_study_to_label_opens_it_with_its_geometry(make_napari_viewer, qtbot, errors, tmp_path, phantom,
                                                        monailabel_server):
    dock = TrainingWidget(make_napari_viewer())
    connect(qtbot, dock, monailabel_server)
    client = MonaiLabelClient(monailabel_server)
    client.add_image("to_label_next", phantom.image)
    try:
        assert dock.target.next_study() is not None
        qtbot.waitUntil(lambda: dock.target.worker is None, timeout=30_000)
        assert errors == []
        opened = layer_volume(dock.viewer.layers["to_label_next"])
        assert isinstance(dock.viewer.layers["to_label_next"], Image) and opened.shape == phantom.image.shape
        np.testing.assert_allclose(opened.origin, phantom.image.origin, atol=1e-4)
        np.testing.assert_allclose(opened.direction, phantom.image.direction, atol=1e-6)
        np.testing.assert_array_equal(opened.array, phantom.image.array)
    finally:
        client.remove_image("to_label_next")
