"""The PACS dock against a real Orthanc: search, open, correct a label, send it back as DICOM-SEG."""

import highdicom as hd
import numpy as np
import pydicom
import pytest

from napari_medvision._napari.layers import layer_volume
from napari_medvision._napari.results import segmentation_layers
from napari_medvision._qt.pacs_widget import PacsWidget
from napari_medvision.core.dicom.dicomweb import PacsClient, PacsCredentials
from napari_medvision.core.inference import run_model
from napari_medvision.core.models import find_model
from napari_medvision.core.phantom import generate_phantom
from tests.conftest import drain
from tests.dicom_series import volume_to_ct_series
from tests.orthanc import PASSWORD, USER, orthanc_auth  # noqa: F401 - fixture

pytestmark = pytest.mark.gui


def wait(qtbot, widget):
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60000)
    qtbot.wait(20)


def test_pacs_to_napari_to_model_to_corrected_seg_to_pacs(make_napari_viewer, qtbot, orthanc_auth, tmp_path,
                                                           monkeypatch):
    monkeypatch.setenv("MEDVISION_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MEDVISION_PACS_PASSWORD", raising=False)
    case = generate_phantom(seed=3, shape=(20, 48, 48), spacing=(6.0, 6.0, 10.0), lesion_probability=0.0)
    paths = volume_to_ct_series(case.image, tmp_path / "ct", patient_id="DOCK-1", description="Abdomen CT")
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
    assert [widget.table.item(0, c).text() for c in (2, 3, 4)] == ["CT", "Abdomen CT", "20"]

    widget.open_selected()
    wait(qtbot, widget)
    [image] = viewer.layers
    np.testing.assert_array_equal(image.affine.affine_matrix, case.image.napari_affine())

    # The Run-model dock's result layers for the sample organ model, computed the same way.
    model = find_model("ct_organs_unet")
    _, result = drain(run_model(model, layer_volume(image)))
    data, kwargs, _ = segmentation_layers(result, "ct_organs_unet", model.colors)[0]
    labels = viewer.add_labels(data, **kwargs)
    widget._refresh_layers()
    widget.labels_combo.setCurrentText(labels.name)
    widget.send_selected()  # the model's output: AUTOMATIC
    wait(qtbot, widget)
    labels.data[labels.data == 3] = 0  # the radiologist removes the liver
    widget.send_selected()  # corrected: MANUAL
    wait(qtbot, widget)

    sent = {}
    for record in client.search(patient_id="DOCK-1", modality="SEG"):
        [path] = client.pull(record.series_uid, tmp_path / record.series_uid)
        seg = hd.seg.segread(path)
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == str(pydicom.dcmread(paths[0]).SeriesInstanceUID)
        descriptions = [seg.get_segment_description(n) for n in seg.segment_numbers]
        sent[descriptions[0].algorithm_type.value] = {d.segment_label for d in descriptions}
    assert "liver" in sent["AUTOMATIC"] and sent["MANUAL"] == sent["AUTOMATIC"] - {"liver"}

    # Opening a SEG row brings its source series along (from the cache) and the labels on it.
    viewer.layers.clear()
    widget.modality_combo.setCurrentText("SEG")
    widget.search()
    wait(qtbot, widget)
    assert widget.table.rowCount() == 2
    widget.open_selected()
    wait(qtbot, widget)
    assert [layer._type_string for layer in viewer.layers] == ["image", "labels"]
    np.testing.assert_array_equal(viewer.layers[1].affine.affine_matrix, case.image.napari_affine())
    assert int(np.asarray(viewer.layers[1].data).max()) >= 1


def test_wrong_password_is_a_notification_not_a_crash(make_napari_viewer, qtbot, orthanc_auth):
    widget = PacsWidget(make_napari_viewer())
    widget.url_edit.setText(orthanc_auth.url)
    widget.user_edit.setText(USER)
    widget.password_edit.setText("not-the-password")
    widget.search()
    wait(qtbot, widget)
    assert widget.table.rowCount() == 0 and "failed" in widget.status.text()
