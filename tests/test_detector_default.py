"""The shipped detector's default threshold is its validation operating point, and `medvision infer`
says how many boxes it kept at which threshold."""

import json
import subprocess
import sys

import pytest

from napari_medvision.core.io import write_volume
from napari_medvision.core.models import find_bundle
from napari_medvision.core.models.bundle import SAMPLE_MODELS_DIR
from napari_medvision.core.phantom import generate_phantom
from napari_medvision.samples import detector as detector_sample


def infer(image, *extra):
    done = subprocess.run([sys.executable, "-m", "napari_medvision.cli", "infer", "--model", "nodule_detector",
                           "--input", str(image), "--device", "cpu", *extra],
                          capture_output=True, text=True, encoding="utf-8", timeout=600)
    assert done.returncode == 0, done.stderr
    return done


def test_default_threshold_keeps_a_handful_of_boxes_and_infer_reports_it(tmp_path):
    if not (SAMPLE_MODELS_DIR / "nodule_detector" / "models").is_dir():
        pytest.skip("sample model nodule_detector not present")
    default = find_bundle("nodule_detector").extras["score_threshold"]
    metrics = json.loads((SAMPLE_MODELS_DIR / "nodule_detector" / "docs" / "metrics.json").read_text())
    assert default == metrics["operating_point"]["score_threshold"]
    assert metrics["operating_point"]["at_threshold"]["fp_per_case"] <= 1.0
    case = generate_phantom(424242, **detector_sample.DET_PHANTOM)   # a seed it neither trained nor chose on
    image = write_volume(case.image, tmp_path / "ct.nii.gz")

    record = json.loads(infer(image, "--json").stdout)
    assert record["score_threshold"] == default
    assert 1 <= len(record["boxes"]) <= len(case.lesions) + 4, (len(case.lesions), record["boxes"])
    assert all(box["score"] > default for box in record["boxes"])

    plain = infer(image)
    assert f"kept {len(record['boxes'])} boxes scoring above {default:g}" in plain.stderr
    lower = json.loads(infer(image, "--json", "--score-threshold", "0.3").stdout)
    assert lower["score_threshold"] == 0.3 and len(lower["boxes"]) > len(record["boxes"])
