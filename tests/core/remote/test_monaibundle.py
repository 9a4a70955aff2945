"""Our own shipped sample bundle served by MONAI Label's monaibundle app: listed, run, geometry exact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from napari_medvision.cli import main
from napari_medvision.core.backend import InProcessBackend, drive
from napari_medvision.core.io import write_volume
from napari_medvision.core.models import list_models
from napari_medvision.core.phantom import generate_phantom
from napari_medvision.core.remote.backend import MonaiLabelBackend, ServerCannotError

BUNDLE = "ct_organs_unet"


@pytest.fixture(scope="module")
def phantom():
    """A synthetic CT phantom on a flipped-y grid (LPS direction other than identity)."""
    return generate_phantom(4, shape=(20, 48, 48), spacing=(6.0, 6.0, 10.0), direction=np.diag([1.0, -1.0, 1.0]))


def test_the_shipped_bundle_is_listed_with_its_labels(monaibundle_server, capsys):
    assert main(["models", "--server", monaibundle_server, "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    local = next(model for model in list_models() if model.name == BUNDLE)
    assert record["name"] == BUNDLE and record["task"] == "segmentation"
    assert record["labels"] == {str(value): name for value, name in local.labels.items()}
    assert record["trainable"] is False          # the bundle ships no train.json


def test_the_server_segments_the_phantom_as_this_computer_does(monaibundle_server, phantom):
    backend = MonaiLabelBackend(monaibundle_server)
    (model,) = backend.list_models()
    served = drive(backend.run_model(model, phantom.image))
    bundle = next(model for model in list_models() if model.name == BUNDLE)
    here = drive(InProcessBackend().run_model(bundle, phantom.image))
    labels = served.labels
    assert labels.shape == phantom.image.shape
    assert labels.spacing == phantom.image.spacing and labels.origin == phantom.image.origin
    np.testing.assert_array_equal(labels.direction, phantom.image.direction)
    agreement = float(np.mean(labels.array == here.labels.array))
    assert agreement > 0.99, f"server and local runs of the same bundle agree on only {agreement:.3f} of voxels"
    assert served.label_names == bundle.labels and served.volumes_ml["body"] > 0


def test_cli_infer_writes_the_mask_on_the_phantoms_grid(monaibundle_server, phantom, tmp_path, capsys):
    study = write_volume(phantom.image, tmp_path / "phantom.nrrd")
    out = tmp_path / "mask.nii.gz"
    assert main(["infer", "--server", monaibundle_server, "--model", BUNDLE, "--input", str(study),
                 "--output", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["volumes_ml"]["body"] > 0
    mask, image = sitk.ReadImage(str(out)), sitk.ReadImage(str(study))
    assert mask.GetSize() == image.GetSize()
    np.testing.assert_allclose(mask.GetOrigin(), image.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(mask.GetDirection(), image.GetDirection(), atol=1e-6)


def test_what_a_server_cannot_do_is_a_clear_error():
    backend = MonaiLabelBackend("http://127.0.0.1:9")   # refused before any request
    with pytest.raises(ServerCannotError, match="runs its own models"):
        drive(backend.run("napari_medvision.core.inference.run:run_model"))
    with pytest.raises(ServerCannotError, match="only segmentation"):
        backend.run_model(type("Classifier", (), {"name": "c", "task": "classification"})(), None)
