"""The ``medvision`` command as DESIGN.md fixes it, run as a real subprocess."""

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from tests.conftest import make_image, write_dicom_series


def medvision(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "napari_medvision.cli", *map(str, args)],
                          capture_output=True, text=True, encoding="utf-8", cwd=cwd, timeout=300)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_info_json_equals_simpleitk(tmp_path, suffix):
    path = tmp_path / f"scan{suffix}"
    sitk.WriteImage(make_image(geometry="oblique"), str(path))
    result = medvision("info", path, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    image = sitk.ReadImage(str(path))
    assert info["size"] == list(image.GetSize())
    assert info["spacing"] == list(image.GetSpacing())
    assert info["origin"] == list(image.GetOrigin())
    assert info["direction"] == list(image.GetDirection())
    assert info["shape"] == list(sitk.GetArrayViewFromImage(image).shape)
    assert info["dtype"] == "int16" and info["modality"] is None


def test_info_on_dicom_folder_reports_modality_and_warnings(tmp_path):
    write_dicom_series(tmp_path, np.zeros((4, 6, 6), np.int16), z_positions=[0, 2, 4, 8])
    result = medvision("info", tmp_path, "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["modality"] == "CT"
    assert "warning: uneven slice spacing" in result.stderr


def test_info_on_png_reports_2d_as_simpleitk(tmp_path):
    path = tmp_path / "xray.png"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 30), np.uint8)), str(path))
    info = json.loads(medvision("info", path, "--json").stdout)
    assert info["size"] == [30, 20] and info["shape"] == [20, 30] and len(info["direction"]) == 4


@pytest.mark.parametrize("args, needle", [
    (["info", "{tmp}/missing.nii.gz"], "does not exist"),
    (["info", "{tmp}/empty.nii.gz"], "empty"),
    (["info", "{tmp}/notes.xyz"], "not a supported image type"),
    (["info"], "required"),
    (["phantom", "{tmp}/out", "--cases", "0"], "at least 1"),
    (["frobnicate"], "invalid choice"),
])
def test_user_errors_exit_2_with_one_line(tmp_path, args, needle):
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    (tmp_path / "notes.xyz").write_text("text")
    result = medvision(*[a.format(tmp=tmp_path) for a in args])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_phantom_command_writes_cases(tmp_path):
    result = medvision("phantom", tmp_path / "ph", "--cases", 2, "--seed", 3,
                       "--shape", 24, 48, 48, "--spacing", 7, 7, 12, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["cases"] == ["phantom_000", "phantom_001"]
    info = json.loads(medvision("info", tmp_path / "ph" / "imagesTr" / "phantom_000_0000.nii.gz", "--json").stdout)
    assert info["shape"] == [24, 48, 48] and info["spacing"] == [7.0, 7.0, 12.0]


def test_infer_segmentation_writes_labels_with_input_geometry(tmp_path):
    from tests.bundles import threshold_bundle

    bundle = threshold_bundle(tmp_path / "thr")
    image = tmp_path / "ct.nrrd"
    sitk.WriteImage(make_image(shape=(12, 30, 40), geometry="flipped_ras"), str(image))
    result = medvision("infer", "--model", bundle, "--input", image, "--output", tmp_path / "seg.nii.gz",
                       "--device", "cpu", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["task"] == "segmentation" and record["labels"] == {"1": "dense"}
    assert set(record["volumes_ml"]) == {"dense"} and record["seconds"] > 0
    written, source = sitk.ReadImage(str(tmp_path / "seg.nii.gz")), sitk.ReadImage(str(image))
    assert written.GetSize() == source.GetSize()
    np.testing.assert_allclose(written.GetDirection(), source.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(written.GetOrigin(), source.GetOrigin(), atol=1e-5)


def test_infer_classification_and_detection_json(tmp_path):
    from tests.bundles import classifier_bundle, detector_bundle

    image = tmp_path / "ct.mha"
    sitk.WriteImage(make_image(shape=(24, 48, 48)), str(image))
    record = json.loads(medvision("infer", "--model", classifier_bundle(tmp_path / "cls"), "--input", image,
                                  "--json").stdout)
    assert record["task"] == "classification" and record["prediction"] in record["probabilities"]
    result = medvision("infer", "--model", detector_bundle(tmp_path / "det"), "--input", image,
                       "--output", tmp_path / "boxes.json", "--score-threshold", 0, "--json")
    record = json.loads(result.stdout)
    assert record["task"] == "detection"
    assert record["boxes"], "a random RetinaNet at threshold 0 proposes boxes"
    assert all(len(b["box_world"]) == 6 and b["label"] == "nodule" for b in record["boxes"])
    assert json.loads((tmp_path / "boxes.json").read_text())["boxes"] == record["boxes"]


def test_infer_user_errors(tmp_path):
    from tests.bundles import unet_bundle

    image = tmp_path / "ct.mha"
    sitk.WriteImage(make_image(), str(image))
    bundle = unet_bundle(tmp_path / "u2", in_channels=2)
    for args, needle in [
        (["--model", "nope", "--input", image], "no model called 'nope'"),
        (["--model", bundle, "--input", image], "expects 2 input channel"),
        (["--model", bundle, "--input", tmp_path / "missing.nii.gz"], "does not exist"),
    ]:
        result = medvision("infer", *args)
        assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: ")
        assert needle in result.stderr and "Traceback" not in result.stderr


def test_infer_and_interact_never_write_over_their_input_study(tmp_path):
    from tests.bundles import unet_bundle

    image = tmp_path / "ct.mha"
    sitk.WriteImage(make_image(), str(image))
    before = image.read_bytes()
    for args in (["infer", "--model", unet_bundle(tmp_path / "u"), "--input", image, "--output", tmp_path / "." / "ct.mha"],
                 ["interact", "--input", image, "--point", "3,3,3,+", "--output", image]):
        result = medvision(*args)
        assert result.returncode == 2 and "it is the input study" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and image.read_bytes() == before


def test_models_json_lists_user_models(tmp_path):
    import os

    from tests.bundles import classifier_bundle

    classifier_bundle(tmp_path / "models" / "lesion_cls")
    env = {**os.environ, "MEDVISION_MODELS": str(tmp_path / "models")}
    result = subprocess.run([sys.executable, "-m", "napari_medvision.cli", "models", "--json"],
                            capture_output=True, text=True, encoding="utf-8", env=env, timeout=120)
    records = {r["name"]: r for r in json.loads(result.stdout)}
    assert records["lesion_cls"]["task"] == "classification"
    assert set(records["lesion_cls"]) == {"name", "task", "path", "labels", "description",  # DESIGN's keys
                                          "needs_trust", "trust_findings", "trusted",  # issue 22's
                                          "kind"}  # issue 11's
    assert records["lesion_cls"]["needs_trust"] is False and records["lesion_cls"]["trust_findings"] == []
    assert records["lesion_cls"]["kind"] == "bundle"
