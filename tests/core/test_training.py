"""The segmentation training loop on tiny synthetic items, and the metrics it reports."""

import threading

import numpy as np
import pytest
import torch

from napari_medvision.core.metrics import dice, roc_auc
from napari_medvision.core.training.trainer import TrainSettings, train_segmentation
from tests.conftest import drain


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


def test_metrics():
    assert dice(np.array([1, 1, 0]), np.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert np.isnan(dice(np.zeros(3), np.zeros(3)))
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert roc_auc([0.5, 0.5], [1, 0]) == 0.5
