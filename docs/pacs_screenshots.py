"""The user guide's PACS pictures, from the real app and a real Orthanc (DICOMweb plugin).

Run under a (virtual) display, with Orthanc installed (``scripts/setup_pacs.sh``)::

    xvfb-run -a .venv/bin/python docs/pacs_screenshots.py

A synthetic CT goes to the PACS; the PACS dock searches and opens it; the sample organ model
segments it; the labels go back as DICOM-SEG; the SEG series is opened back from the PACS.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import napari
import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' Orthanc and DICOM helpers

from docs.make_screenshots import save, settle  # noqa: E402
from napari_medvision._napari.results import segmentation_layers  # noqa: E402
from napari_medvision._qt.demo import PLUGIN  # noqa: E402
from napari_medvision._napari.layers import layer_volume  # noqa: E402
from napari_medvision.core.dicom.dicomweb import PacsClient  # noqa: E402
from napari_medvision.core.inference import run_model  # noqa: E402
from napari_medvision.core.models import find_model  # noqa: E402
from napari_medvision.core.phantom import generate_phantom  # noqa: E402
from tests.dicom_series import volume_to_ct_series  # noqa: E402
from tests.orthanc import start_orthanc, stop_orthanc  # noqa: E402


def wait(widget) -> None:
    while widget._worker is not None:
        settle(None, 5)


def main() -> None:
    with tempfile.TemporaryDirectory() as temp:
        temp = Path(temp)
        server = start_orthanc(temp / "orthanc", with_auth=False)
        try:
            case = generate_phantom(seed=0, max_lesions=3, lesion_probability=1.0)
            paths = volume_to_ct_series(case.image, temp / "ct", patient_id="DEMO-0042",
                                        patient_name="Demo^Patient", description="CT abdomen 5 mm")
            client = PacsClient(server.url)
            client.push(pydicom.dcmread(p) for p in paths)
            viewer = napari.Viewer(title="napari-medvision")
            _, dock = viewer.window.add_plugin_dock_widget(PLUGIN, "PACS")
            dock.setMinimumWidth(560)
            dock.url_edit.setText(server.url)
            dock.patient_edit.setText("DEMO-0042")
            dock.search()
            wait(dock)
            dock.open_selected()
            wait(dock)
            image = viewer.layers[0]
            model = find_model("ct_organs_unet")
            result = _segment(model, layer_volume(image))
            for data, kwargs, kind in segmentation_layers(result, "ct_organs_unet", model.colors):
                if kind == "labels":
                    kwargs["metadata"]["source"] = image.metadata["source"]
                    viewer.add_labels(data, **kwargs).opacity = 0.35
            viewer.dims.set_point(0, -30.0)
            dock._refresh_layers()
            dock.labels_combo.setCurrentText("ct_organs_unet labels")
            dock.send_selected()
            wait(dock)
            dock.search()
            wait(dock)
            save(viewer, "pacs_dock.png")
            viewer.close()
        finally:
            stop_orthanc(server)


def _segment(model, volume):
    engine = run_model(model, volume)
    while True:
        try:
            next(engine)
        except StopIteration as stop:
            return stop.value


if __name__ == "__main__":
    main()
