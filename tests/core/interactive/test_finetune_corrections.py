"""Fine-tuning the click model honours the case store's edit masks and a device, as the segmentation
fine-tune does: edited voxels weigh more in the loss, edited structures are drawn more often, the
device is the one asked for (the CLI's --device reaches it), a cancel keeps the best epoch if asked."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_medvision.core.errors import MedvisionError, ModelError
from napari_medvision.core.interactive import finetune as interactive_finetune
from napari_medvision.core.interactive.click_unet import SAMPLE_NAME
from napari_medvision.core.interactive.finetune import CorrectionWeightedLoss, _case_source
from napari_medvision.core.training.case_store import CaseStore
from napari_medvision.core.training.finetune import FinetuneSettings, finetune
from napari_medvision.core.training.versions import VersionStore
from napari_medvision.core.volume import Volume


def two_balls_store(folder, edit_second: bool = True) -> CaseStore:
    """One case with two balls; the model 'missed' half of the second one, the user painted it back."""
    grid = np.indices((20, 40, 80)).astype(float)   # the balls far apart: no cube around one holds the other
    ball = lambda centre, r: ((grid - np.reshape(centre, (3, 1, 1, 1))) ** 2).sum(0) <= r * r  # noqa: E731
    first, second = ball((10, 20, 12), 5), ball((10, 20, 68), 5)
    label = (first | second).astype(np.uint8)
    image = Volume((np.random.default_rng(0).normal(0, 5, label.shape) + 80 * label).astype(np.float32),
                   spacing=(1.0, 1.0, 2.0))
    predicted = label.copy()
    if edit_second:
        predicted[:10][second[:10]] = 0
    store = CaseStore.create(folder, {"background": 0, "structure": 1}, channel="CT")
    store.add_case("case", image, image.with_array(label), model_output=image.with_array(predicted))
    return store


def test_the_loss_is_dice_ce_at_weight_zero_and_edited_voxels_weigh_more():
    from monai.losses import DiceCELoss

    torch.manual_seed(0)
    logits, targets = torch.randn(2, 1, 8, 8, 8), (torch.rand(2, 1, 8, 8, 8) > 0.5).float()
    edited = torch.zeros_like(targets)
    edited[:, :, :4] = 1
    assert float(CorrectionWeightedLoss(0)(logits, targets, edited)) == pytest.approx(
        float(DiceCELoss(sigmoid=True)(logits, targets)), rel=1e-6)
    wrong_in_edits, wrong_elsewhere = logits.clone(), logits.clone()
    wrong_in_edits[:, :, :4] = 8 * (0.5 - targets[:, :, :4])       # confidently wrong where the user edited
    wrong_elsewhere[:, :, 4:] = 8 * (0.5 - targets[:, :, 4:])      # as wrong, where the user did not
    loss = CorrectionWeightedLoss(4.0)
    assert float(loss(wrong_in_edits, targets, edited)) > float(loss(wrong_elsewhere, targets, edited)) + 0.5


def test_edited_structures_are_drawn_more_often_with_their_edit_cube(tmp_path):
    from napari_medvision.core.interactive.examples import edited_example

    store = two_balls_store(tmp_path / "store")
    plain = _case_source(store, "case", correction_weight=0.0)
    weighted = _case_source(store, "case", correction_weight=4.0)
    assert plain.structure_weights is None and plain.edits is not None and plain.edits.sum() > 0
    second = [i for i, (lo, _, _, _) in enumerate(weighted.structures) if lo[2] > 40]
    assert weighted.structure_weights.tolist() == [5.0 if i in second else 1.0 for i in range(2)]
    rng = np.random.default_rng(1)
    draws = [edited_example(weighted, rng, structure_chance=1.0) for _ in range(60)]
    edited_share = np.mean([bool(d[2].any()) for d in draws])
    assert 0.65 < edited_share < 0.97               # 5 in 6 draws expected; 1 in 2 without the weight
    assert all(d[2].shape == d[1].shape and not (d[2] & ~d[1]).any() for d in draws)   # the edits lie on the ball


def test_finetune_runs_on_the_device_asked_for_and_records_the_weight(tmp_path, monkeypatch):
    monkeypatch.setattr(interactive_finetune, "VALIDATION_EXAMPLES", 1)
    from napari_medvision.core.models import find_bundle
    from tests.conftest import drain

    store = two_balls_store(tmp_path / "store")
    settings = FinetuneSettings(epochs=1, steps_per_epoch=1, batch_size=1, max_minutes=2, correction_weight=4.0)
    _, result = drain(finetune(find_bundle(SAMPLE_NAME), store, VersionStore(tmp_path / "versions"), settings,
                               device="cpu", output=tmp_path / "new"))
    record = json.loads((tmp_path / "new" / "docs" / "version.json").read_text())
    assert record["device"] == "cpu" and record["correction_weight"] == 4.0 and len(result.history) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelError, match="CUDA was requested"):
        drain(finetune(find_bundle(SAMPLE_NAME), store, VersionStore(tmp_path / "v2"), settings, device="cuda"))


def test_the_cli_device_reaches_the_interactive_fine_tune(tmp_path, monkeypatch):
    from napari_medvision.cli import main

    seen = []

    def spy(*args, device="auto", **kwargs):
        seen.append(device)
        raise MedvisionError("stopped by the test")
        yield  # a generator, as the real one

    monkeypatch.setattr(interactive_finetune, "finetune_interactive", spy)
    two_balls_store(tmp_path / "store")
    code = main(["finetune", "--model", SAMPLE_NAME, "--cases", str(tmp_path / "store"), "--output",
                 str(tmp_path / "new"), "--device", "cpu"])
    assert code == 2 and seen == ["cpu"]


def test_a_cancel_keeps_the_best_epoch_only_when_asked(tmp_path, monkeypatch):
    from napari_medvision.core.models import find_bundle
    from napari_medvision.core.training.trainer import TrainStep

    scores = iter([0.1, 0.6, 0.1, 0.6])           # base, epoch 1 (better), for each of the two runs
    monkeypatch.setattr(interactive_finetune, "_validate", lambda *args: next(scores))
    store = two_balls_store(tmp_path / "store")
    settings = FinetuneSettings(epochs=5, steps_per_epoch=1, batch_size=1, max_minutes=5)
    for keep, root in ((False, tmp_path / "dropped"), (True, tmp_path / "kept")):
        settings.keep_best_on_cancel = keep
        run = finetune(find_bundle(SAMPLE_NAME), store, VersionStore(root), settings, device="cpu")
        for step in run:                           # cancel right after epoch 1's validation
            if isinstance(step, TrainStep) and step.val_dice is not None:
                run.close()
                break
        written = VersionStore(root).versions()
        assert len(written) == (1 if keep else 0)
    assert written[0].record["cancelled"] is True and written[0].record["best_epoch"] == 1


def test_validation_cases_without_a_structure_are_a_clear_error_not_a_silent_parent(tmp_path):
    """With nothing to validate on, no epoch could ever be judged better and the parent's weights came
    back as the new version, silently: now it is refused before training."""
    from napari_medvision.core.models import find_bundle
    from tests.conftest import drain

    store = two_balls_store(tmp_path / "store")
    image, _ = store.read_case("case")
    speck = np.zeros(image.shape, np.uint8)
    speck[10, 20, 40] = 1                                       # 1 voxel: no structure of 30 or more
    store.add_case("speck", image, image.with_array(speck))
    settings = FinetuneSettings(epochs=1, steps_per_epoch=1, batch_size=1, max_minutes=2, validation_cases=["speck"])
    with pytest.raises(MedvisionError, match="speck hold no labelled structure"):
        drain(finetune(find_bundle(SAMPLE_NAME), store, VersionStore(tmp_path / "versions"), settings,
                       device="cpu", output=tmp_path / "new"))
    assert not (tmp_path / "new").exists()
