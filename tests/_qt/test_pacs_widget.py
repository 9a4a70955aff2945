"""The PACS dock against a real Orthanc: search, open, correct a label, send it back as DICOM-SEG."""

import highdicom as hd
import numpy as np
import pydicom
import pytest

from napari_medvision._napari.layers import labels_layer_data, layer_volume
from napari_medvision._napari.results import MODEL_OUTPUT_KEY
from napari_medvision._qt.pacs_widget import PacsWidget
from napari_medvision.core.dicom.dicomweb import PacsClient, PacsCredentials
from tests.dicom_series import write_ct_series
from tests.orthanc import PASSWORD, USER, orthanc_auth  # noqa: F401 - fixture

pytestmark = pytest.mark.gui


def wait(qtbot, widget):
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60000)
    qtbot.wait(20)


def test_search_open_edit_and_send_back(make_napari_viewer, qtbot, orthanc_auth, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDVISION_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MEDVISION_PACS_PASSWORD", raising=False)
    hu = np.full((5, 24, 24), -1000, np.int16)
    hu[1:4, 6:18, 6:18] = 60
    paths = write_ct_series(tmp_path / "ct", hu, patient_id="DOCK-1", description="Abdomen CT")
    client = PacsClient(orthanc_auth.url, PacsCredentials(USER, PASSWORD))
    client.push(pydicom.dcmread(p) for p in paths)

    viewer = make_napari_viewer()
    widget = PacsWidget(viewer)
    widget.url_edit.setText(orthanc_auth.url)
    widget.user_edit.setText(USER)
    widget.password_edit.setText(PASSWORD)
    widget.patient_edit.setText("DOCK-1")
    widget.search()
    wait(qtbot, widget)
    assert widget.table.rowCount() == 1
    assert [widget.table.item(0, c).text() for c in (2, 3, 4)] == ["CT", "Abdomen CT", "5"]

    widget.open_selected()
    wait(qtbot, widget)
    [image] = viewer.layers
    np.testing.assert_array_equal(np.asarray(image.data), hu)

    # A "model output", then a correction with the brush: the segment must go back MANUAL.
    model_output = (np.asarray(image.data) > 0).astype(np.uint8)
    data, kwargs, _ = labels_layer_data(layer_volume(image).with_array(model_output), "liver", {1: "liver"})
    kwargs["metadata"].update({MODEL_OUTPUT_KEY: model_output.copy(), "model": "ct_organs_unet"})
    labels = viewer.add_labels(data.copy(), **kwargs)
    labels.data[2, 3, 3] = 1
    widget._refresh_layers()
    widget.labels_combo.setCurrentText("liver")
    widget.send_selected()
    wait(qtbot, widget)

    [seg_record] = client.search(patient_id="DOCK-1", modality="SEG")
    client.pull(seg_record.series_uid, tmp_path / "seg")
    seg = hd.seg.segread(next((tmp_path / "seg").glob("*.dcm")))
    description = seg.get_segment_description(1)
    assert (description.segment_label, description.algorithm_type.value) == ("liver", "MANUAL")
    assert int(seg.pixel_array.sum()) == int(model_output.sum()) + 1


def test_wrong_password_is_a_notification_not_a_crash(make_napari_viewer, qtbot, orthanc_auth):
    widget = PacsWidget(make_napari_viewer())
    widget.url_edit.setText(orthanc_auth.url)
    widget.user_edit.setText(USER)
    widget.password_edit.setText("not-the-password")
    widget.search()
    wait(qtbot, widget)
    assert widget.table.rowCount() == 0 and "failed" in widget.status.text()
