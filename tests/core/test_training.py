"""A few steps of every sample model's training on tiny phantoms (the real runs live in sample_models/)."""

import json
import threading

import numpy as np
import pytest
import torch

from napari_medvision.core.metrics import dice, roc_auc
from napari_medvision.core.models import load_bundle
from napari_medvision.core.phantom import Lesion
from napari_medvision.core.training import classifier_sample, detector_sample, samples
from napari_medvision.core.training.detector_sample import froc_point
from napari_medvision.core.training.trainer import TrainSettings, train_segmentation
from tests.conftest import drain

TINY = {"shape": (24, 48, 48), "spacing": (8.0, 8.0, 14.0), "vary_slice_thickness": True}


@pytest.fixture
def tiny_phantoms(monkeypatch):
    monkeypatch.setattr(samples, "PHANTOM", TINY)
    monkeypatch.setattr(samples, "SEG_ROI", [32, 32, 16])
    monkeypatch.setattr(classifier_sample, "CLS_PHANTOM", {**TINY, "lesion_probability": 0.5})
    monkeypatch.setattr(detector_sample, "DET_PHANTOM", {**TINY, "lesion_probability": 1.0,
                                                         "lesion_diameter_mm": (14.0, 24.0)})


def test_trainer_improves_and_keeps_the_best_epoch():
    torch.manual_seed(0)
    from monai.networks.nets import UNet

    network = UNet(3, 1, 2, (4, 8), (2,), num_res_units=0)
    image = torch.zeros(1, 16, 16, 16)
    image[:, 4:12, 4:12, 4:12] = 1.0
    item = {"image": image + 0.1 * torch.rand_like(image), "label": (image > 0.5).float()}
    settings = TrainSettings(max_epochs=6, steps_per_epoch=5, batch_size=1, roi_size=(16, 16, 16), patience=10,
                             learning_rate=1e-2)
    steps, result = drain(train_segmentation(network, [item], [item], 2, settings, torch.device("cpu")))
    assert [s.val_dice for s in steps if s.val_dice is not None] == [h["val_dice"] for h in result.history]
    assert result.best_dice == max(h["val_dice"] for h in result.history)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.best_dice > 0.8
    network.load_state_dict(result.best_state)


def test_trainer_stops_when_closed():
    from monai.networks.nets import UNet

    network = UNet(3, 1, 2, (4, 8), (2,), num_res_units=0)
    item = {"image": torch.rand(1, 16, 16, 16), "label": torch.zeros(1, 16, 16, 16)}
    generator = train_segmentation(network, [item], [], 2, TrainSettings(max_epochs=100, batch_size=1,
                                   roi_size=(16, 16, 16)), torch.device("cpu"))
    step = next(generator)
    assert step.epoch == 1 and step.step == 1
    generator.close()
    with pytest.raises(StopIteration):  # closed: it neither trains on nor ignores the close
        next(generator)
    assert not [t for t in threading.enumerate() if t.name.startswith("medvision-")], "no thread left running"


def test_segmentation_sample_training_writes_a_runnable_bundle(tmp_path, tiny_phantoms):
    out = tmp_path / "unet"
    steps, metrics = drain(samples.train_segmentation_sample("ct_organs_unet", out, cases=2, val_cases=1,
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
    monkeypatch.setattr(classifier_sample, "CLS_SIZE", [32, 32, 16])
    _, metrics = drain(classifier_sample.train_classifier(tmp_path / "cls", cases=8, val_cases=4, test_cases=4,
                                                          crop_steps=2, epochs=1, device="cpu"))
    held_out = metrics["held_out"]
    assert len(held_out["seeds"]) == 4 and held_out["accuracy"] * 4 in (0, 1, 2, 3, 4), held_out
    assert metrics["training"]["temperature"] > 0
    assert load_bundle(tmp_path / "cls").task == "classification"


def test_detector_sample_training(tmp_path, tiny_phantoms):
    _, metrics = drain(detector_sample.train_detector(tmp_path / "det", cases=2, val_cases=1, test_cases=1,
                                                      epochs=1, device="cpu"))
    assert "nodule_sensitivity_at_1fp_per_case" in metrics["held_out"]
    assert "lesion_sensitivity_at_1fp_per_case" in metrics["held_out"]
    assert load_bundle(tmp_path / "det").task == "detection"


def test_froc_point_counts_hits_and_false_positives():
    big = Lesion((0, 0, 0), 12.0, "lung", [0, 0, 0, 12, 12, 12])
    small = Lesion((50, 0, 0), 6.0, "lung", [47, -3, -3, 53, 3, 3])
    case = ([(0.9, [1, 1, 1, 11, 11, 11]), (0.8, [100, 100, 100, 110, 110, 110]), (0.7, [48, -2, -2, 52, 2, 2])],
            [big, small])
    assert froc_point([case], 1.0) == 1.0
    assert froc_point([([(0.9, [100, 100, 100, 110, 110, 110]), (0.5, [1, 1, 1, 11, 11, 11])], [big])], 0.5) == 0.0


def test_metrics():
    assert dice(np.array([1, 1, 0]), np.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert np.isnan(dice(np.zeros(3), np.zeros(3)))
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert roc_auc([0.5, 0.5], [1, 0]) == 0.5
