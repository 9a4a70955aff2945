"""The MONAI Label backend against a real server (started by the fixture), and its failure messages."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from napari_medvision.cli import main
from napari_medvision.core.io import read_volume
from napari_medvision.core.remote.jobs import label_mapping
from napari_medvision.core.remote.monailabel import MonaiLabelClient, ServerError, mask_on_study_grid
from napari_medvision.core.volume import Volume

from ...conftest import make_image
from .conftest import free_port

MODEL = "segmentation_spleen"


@pytest.fixture
def study(tmp_path):
    """A small oblique CT-like study (values -1000..1500 HU)."""
    path = tmp_path / "study.nrrd"
    sitk.WriteImage(make_image((16, 36, 40), geometry="oblique", seed=3), str(path))
    return path


@pytest.fixture
def with_token(monailabel_server, monkeypatch):
    """The server's URL, with a token in the environment (sent as a bearer header, unused without auth)."""
    monkeypatch.setenv("MEDVISION_SERVER_TOKEN", "not-checked-by-a-server-without-auth")
    return monailabel_server


def test_models_lists_the_servers_model(with_token, capsys):
    assert main(["models", "--server", with_token, "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in records] == [MODEL]
    assert records[0]["labels"] == {"1": "spleen"} and records[0]["trainable"] is True


def test_without_a_token_the_server_answers_401_in_one_line(monailabel_auth_server, monkeypatch, capsys):
    url, token = monailabel_auth_server
    monkeypatch.delenv("MEDVISION_SERVER_TOKEN", raising=False)
    assert main(["models", "--server", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "401" in err[0] and "MEDVISION_SERVER_TOKEN" in err[0]


def test_a_bad_token_is_refused_and_never_printed(monailabel_auth_server, monkeypatch, capsys):
    url, token = monailabel_auth_server
    bad = token[:-6] + "AAAAAA"
    monkeypatch.setenv("MEDVISION_SERVER_TOKEN", bad)
    assert main(["models", "--server", url, "--json"]) == 2
    captured = capsys.readouterr()
    assert "401" in captured.err and bad not in captured.err + captured.out
    assert token not in repr(MonaiLabelClient(url, token=token))


def test_infer_on_the_server_keeps_the_studys_exact_geometry(with_token, study, tmp_path, capsys):
    out = tmp_path / "mask.nii.gz"
    assert main(["infer", "--server", with_token, "--model", MODEL, "--input", str(study), "--output", str(out),
                 "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["labels"] == {"1": "spleen"} and set(record["volumes_ml"]) == {"spleen"}
    mask, image = sitk.ReadImage(str(out)), sitk.ReadImage(str(study))
    assert mask.GetSize() == image.GetSize()
    np.testing.assert_allclose(mask.GetSpacing(), image.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(mask.GetOrigin(), image.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(mask.GetDirection(), image.GetDirection(), atol=1e-6)
    assert set(np.unique(sitk.GetArrayFromImage(mask))) <= {0, 1}


def test_unknown_model_is_one_line_naming_the_ones_there(with_token, study, capsys):
    assert main(["infer", "--server", with_token, "--model", "liver_nope", "--input", str(study)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "liver_nope" in err[0] and MODEL in err[0]


def test_label_upload_and_next_study_to_label(with_token, study):
    client = MonaiLabelClient(with_token)
    volume = read_volume(study)
    try:
        client.add_image("unlabelled_study", volume)
        assert client.next_sample("random")["id"] == "unlabelled_study"
        client.add_image("labelled_study", volume)
        answer = client.save_label("labelled_study", volume.with_array((volume.array > 500).astype(np.uint8)))
        assert answer["label"] == "labelled_study"
        with pytest.raises(ServerError, match="no active-learning strategy 'nope'"):
            client.next_sample("nope")
    finally:  # the session's server trains on its datastore later
        for image_id in ("unlabelled_study", "labelled_study"):
            client.remove_image(image_id)


@pytest.mark.slow
def test_finetune_on_the_server_reports_its_metric(with_token, tmp_path, capsys):
    from napari_medvision.core.phantom import write_phantom_dataset

    # 1.5 x 1.5 x 2 mm (the spleen model's grid) makes it 128 x 128 x 64: whole windows for its validation
    store = write_phantom_dataset(tmp_path / "cases", cases=3, seed=1, shape=(32, 64, 64), spacing=(3.0, 3.0, 4.0))
    assert main(["finetune", "--server", with_token, "--model", MODEL, "--cases", str(store.root),
                 "--epochs", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "DONE" and result["cases"] == 3
    assert 0.0 <= result["metric"] <= 1.0


def test_unreachable_server_is_one_line(capsys, study):
    assert main(["infer", "--server", f"http://127.0.0.1:{free_port()}", "--model", MODEL, "--input",
                 str(study)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach" in err[0]


def test_a_mask_of_another_size_is_refused(tmp_path):
    volume = Volume(np.zeros((8, 10, 12), np.int16), spacing=(1.0, 1.0, 2.0))
    wrong = tmp_path / "wrong.nii.gz"
    sitk.WriteImage(sitk.Image([12, 10, 9], sitk.sitkUInt8), str(wrong))
    with pytest.raises(ServerError, match="mask of size"):
        mask_on_study_grid(wrong, volume)
    shifted = sitk.Image([12, 10, 8], sitk.sitkUInt8)
    shifted.SetOrigin((0.5, 0.0, 0.0))
    shifted.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(shifted, str(tmp_path / "shifted.nii.gz"))
    with pytest.raises(ServerError, match="another grid"):
        mask_on_study_grid(tmp_path / "shifted.nii.gz", volume)


def test_a_flipped_mask_on_the_same_grid_lands_voxel_for_voxel(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (8, 10, 12)).astype(np.uint8)
    volume = Volume(labels.astype(np.int16), spacing=(1.0, 1.5, 2.0), origin=(3.0, -4.0, 5.0))
    flipped = sitk.GetImageFromArray(labels[:, :, ::-1].copy())   # x reversed, direction -x: same world
    flipped.SetSpacing(volume.spacing)
    flipped.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    flipped.SetOrigin((3.0 + 11 * 1.0, -4.0, 5.0))
    sitk.WriteImage(flipped, str(tmp_path / "flipped.nii.gz"))
    result = mask_on_study_grid(tmp_path / "flipped.nii.gz", volume)
    np.testing.assert_array_equal(result.array, labels)
    assert result.origin == volume.origin


def test_labels_are_matched_by_name():
    assert label_mapping({1: "Liver", 4: "spleen", 5: "kidney"}, {1: "spleen", 2: "liver"}) == {1: 2, 4: 1}


def test_backend_jobs_run_on_the_server_and_cancel(with_token, study):
    from napari_medvision.core.errors import CancelledError
    from napari_medvision.core.remote.backend import MonaiLabelBackend

    backend = MonaiLabelBackend(with_token)
    (model,) = backend.list_models()
    assert model.name == MODEL and model.labels == {1: "spleen"} and model.summary()["kind"] == "monailabel"
    volume = read_volume(study)
    job = backend.run_model(model, volume)
    steps = []
    while True:
        try:
            steps.append(next(job))
        except StopIteration as stop:
            result = stop.value
            break
    assert steps and result.labels.shape == volume.shape and result.labels.origin == volume.origin
    cancelled = backend.run_model(model, volume)
    next(cancelled)
    backend.cancel()
    with pytest.raises(CancelledError):
        next(cancelled)
