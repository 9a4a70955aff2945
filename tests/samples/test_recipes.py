"""The sample recipes: a few steps of each on tiny phantoms (the full runs are the shipped sample
models), and the shipped bundles are what the recipes write (same configs, same seeds)."""

import json

import numpy as np
import pytest

from napari_medvision.core.models import load_bundle
from napari_medvision.core.models.bundle import SAMPLE_MODELS_DIR
from napari_medvision.core.phantom import Lesion
from napari_medvision.samples import (SAMPLES, SEGMENTATION_SAMPLES, classifier, detector, interactive, radiograph,
                                      segmentation, train_sample)
from napari_medvision.samples.common import case_seeds
from napari_medvision.samples.detector import froc_point
from tests.conftest import drain

TINY = {"shape": (24, 48, 48), "spacing": (8.0, 8.0, 14.0), "vary_slice_thickness": True}


@pytest.fixture
def tiny_phantoms(monkeypatch):
    monkeypatch.setattr(segmentation, "PHANTOM", TINY)
    monkeypatch.setattr(segmentation, "SEG_ROI", [32, 32, 16])
    monkeypatch.setattr(classifier, "CLS_PHANTOM", {**TINY, "lesion_probability": 0.5})
    monkeypatch.setattr(detector, "DET_PHANTOM", {**TINY, "lesion_probability": 1.0,
                                                  "lesion_diameter_mm": (14.0, 24.0)})


def test_segmentation_sample_training_writes_a_runnable_bundle(tmp_path, tiny_phantoms):
    out = tmp_path / "unet"
    steps, metrics = drain(segmentation.train_segmentation_sample("ct_organs_unet", out, cases=2, val_cases=1,
                                                                  test_cases=1, epochs=1, steps_per_epoch=2,
                                                                  device="cpu"))
    bundle = load_bundle(out)
    assert bundle.task == "segmentation" and bundle.labels[3] == "liver"
    assert bundle.code_findings() == []
    assert set(metrics["held_out"]["dice"]) == set(bundle.labels.values())
    card = (out / "docs" / "README.md").read_text()
    assert "not for diagnosis" in card and "Held-out results" in card
    assert json.loads((out / "docs" / "metrics.json").read_text())["training"]["epochs_run"] == 1


def test_classifier_sample_training(tmp_path, tiny_phantoms, monkeypatch):
    monkeypatch.setattr(classifier, "CLS_SIZE", [32, 32, 16])
    _, metrics = drain(classifier.train_classifier(tmp_path / "cls", cases=8, val_cases=4, test_cases=4,
                                                   crop_steps=2, epochs=1, device="cpu"))
    held_out = metrics["held_out"]
    assert len(held_out["seeds"]) == 4 and held_out["accuracy"] * 4 in (0, 1, 2, 3, 4), held_out
    assert metrics["training"]["temperature"] > 0
    assert load_bundle(tmp_path / "cls").task == "classification"


def test_detector_sample_training(tmp_path, tiny_phantoms):
    _, metrics = drain(detector.train_detector(tmp_path / "det", cases=2, val_cases=1, test_cases=1,
                                               epochs=1, device="cpu"))
    assert "nodule_sensitivity_at_1fp_per_case" in metrics["held_out"]
    assert "lesion_sensitivity_at_1fp_per_case" in metrics["held_out"]
    assert load_bundle(tmp_path / "det").task == "detection"


def test_interactive_sample_training_writes_a_bundle_the_engine_runs(tmp_path):
    from napari_medvision.core.interactive.click_unet import ClickUNetEngine

    out = tmp_path / "interactive"
    steps, metrics = drain(interactive.train_interactive_sample(out, cases=1, epochs=1, steps_per_epoch=1, batch=1,
                                                                evaluate=False))
    assert load_bundle(out).task == "interactive" and load_bundle(out).code_findings() == []
    assert metrics["training"]["steps"] == 1 and metrics["training"]["real_scans"] == []
    assert "not for diagnosis" in (out / "docs" / "README.md").read_text()
    engine = ClickUNetEngine(out)
    assert engine.fits(np.zeros((8, 8, 8)), (1, 1, 1)) and not engine.network().training


def test_froc_point_counts_hits_and_false_positives():
    big = Lesion((0, 0, 0), 12.0, "lung", [0, 0, 0, 12, 12, 12])
    small = Lesion((50, 0, 0), 6.0, "lung", [47, -3, -3, 53, 3, 3])
    case = ([(0.9, [1, 1, 1, 11, 11, 11]), (0.8, [100, 100, 100, 110, 110, 110]), (0.7, [48, -2, -2, 52, 2, 2])],
            [big, small])
    assert froc_point([case], 1.0) == 1.0
    assert froc_point([([(0.9, [100, 100, 100, 110, 110, 110]), (0.5, [1, 1, 1, 11, 11, 11])], [big])], 0.5) == 0.0


CONFIGS = {"ct_organs_unet": lambda: segmentation.segmentation_bundle_config("ct_organs_unet"),
           "ct_organs_unetr": lambda: segmentation.segmentation_bundle_config("ct_organs_unetr"),
           "lesion_classifier": classifier.bundle_config, "nodule_detector": detector.bundle_config,
           "interactive_unet": interactive.bundle_config, "radiograph_classifier": radiograph.bundle_config}
_VERSIONS = ("monai_version", "pytorch_version")   # of whatever is installed when the recipe runs


@pytest.mark.parametrize("name", SAMPLES)
def test_the_recipes_write_the_shipped_configs(name):
    inference, metadata = json.loads(json.dumps(CONFIGS[name]()))
    shipped = SAMPLE_MODELS_DIR / name / "configs"
    assert inference == json.loads((shipped / "inference.json").read_text(encoding="utf-8"))
    shipped_metadata = json.loads((shipped / "metadata.json").read_text(encoding="utf-8"))
    assert {k: v for k, v in metadata.items() if k not in _VERSIONS} == \
        {k: v for k, v in shipped_metadata.items() if k not in _VERSIONS}


@pytest.mark.parametrize("name", SAMPLES)
def test_the_shipped_models_came_from_the_recipes_seeds(name):
    metrics = json.loads((SAMPLE_MODELS_DIR / name / "docs" / "metrics.json").read_text(encoding="utf-8"))
    training, held_out = metrics["training"], metrics["held_out"]
    assert held_out["seeds"] == case_seeds(training["seed"] + 10_000, len(held_out["seeds"]))
    if name in SEGMENTATION_SAMPLES:
        assert training["seeds"] == case_seeds(training["seed"], training["cases"] + training["validation_cases"])


def test_train_sample_picks_each_recipe():
    assert SEGMENTATION_SAMPLES == tuple(segmentation.NETWORKS)
    recipes = {name: train_sample(name, "unused", seed=0).gi_code.co_name for name in SAMPLES}
    assert recipes == {"ct_organs_unet": "train_segmentation_sample", "ct_organs_unetr": "train_segmentation_sample",
                       "lesion_classifier": "train_classifier", "nodule_detector": "train_detector",
                       "interactive_unet": "train_interactive_sample",
                       "radiograph_classifier": "train_radiograph_classifier"}
    with pytest.raises(ValueError, match="unknown sample model"):
        train_sample("resnet", "unused")


def test_medvision_train_refuses_an_unknown_sample(capsys):
    from napari_medvision.cli import main

    assert main(["train", "resnet", "--output", "unused"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: unknown sample model 'resnet'; choose ct_organs_unet, ct_organs_unetr, lesion_classifier, "
        "nodule_detector, interactive_unet or radiograph_classifier"]


def test_radiograph_recipe_config_passes_the_trust_gate_and_is_2d(tmp_path):
    """The 2D recipe's bundle (random weights) builds untrusted and classifies a DRR."""
    import torch
    from monai.bundle import ConfigParser

    from napari_medvision.core.inference import classify
    from napari_medvision.core.models import load_bundle
    from napari_medvision.core.radiograph_phantom import generate_radiograph
    from napari_medvision.samples.common import drain, write_bundle

    inference, metadata = radiograph.bundle_config()
    torch.manual_seed(0)
    write_bundle(tmp_path / "rc", inference, metadata, ConfigParser({"n": radiograph.NETWORK}).get_parsed_content("n"))
    bundle = load_bundle(tmp_path / "rc")
    assert bundle.code_findings() == [] and bundle.spatial_dims == 2 and bundle.in_channels == 1
    case = generate_radiograph(1)
    result = drain(classify(bundle, case.image, device="cpu"))
    assert set(result.probabilities) == {"no nodule", "nodule"}
    assert result.heatmap is not None and result.heatmap.shape == case.image.shape


def test_radiograph_recipe_pairs_each_nodule_crop_with_its_twin_at_the_same_place():
    """The fix for the first recipe (held-out AUC 0.41): a negative is the nodule-free twin of the same phantom,
    cropped at the very place of the nodule crop, so only the nodule tells them apart."""
    import numpy as np
    import torch
    from monai.bundle import ConfigParser

    prepare = ConfigParser({"p": {"_target_": "Compose", "transforms": radiograph.preprocessing(load=False)}}) \
        .get_parsed_content("p")
    films = radiograph._paired_films([1, 2, 12], prepare)   # 1 and 12 hold nodules, 2 only a liver lesion
    assert list(films["y"]) == [1, 0, 0, 1, 0] and list(films["natural"]) == [2]
    assert list(films["positive"]) == [0, 3] and list(films["twin"]) == [1, 4]
    crops, labels = radiograph._paired_crops(films, np.random.default_rng(0), 8)
    assert list(labels) == [1, 0] * 8 and all(c.shape == (1, 48, 32) for c in crops)
    for nodule, twin in zip(crops[::2], crops[1::2]):
        difference = (nodule - twin).abs()
        assert difference.max() > 0.03, "the nodule shows in its crop"
        # Same place, same anatomy: away from the nodule the two crops (apart from noise and scaling) agree.
        assert torch.quantile(difference.flatten(), 0.5) < 0.02
