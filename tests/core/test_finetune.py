"""Fine-tuning: better on a shifted appearance, new numbered versions, cancel loses nothing."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from napari_medvision.core.errors import MedvisionError, ModelError
from napari_medvision.core.models import load_bundle
from napari_medvision.core.phantom import generate_phantom, shift_appearance
from napari_medvision.core.training import CaseStore
from napari_medvision.core.training.finetune import FinetuneSettings, evaluate, finetune
from napari_medvision.core.training.versions import VersionStore
from tests.bundles import unet_bundle
from tests.conftest import drain

TINY = dict(shape=(24, 48, 48), spacing=(8.0, 8.0, 12.0))
NAMES = {0: "background", 1: "liver", 2: "lung"}


def organs(label):
    """The phantom's labels reduced to the test model's three: background, liver, lung."""
    out = np.zeros_like(label.array)
    out[label.array == 3] = 1
    out[label.array == 2] = 2
    return label.with_array(out)


def make_store(root, seeds, shifted=True):
    store = CaseStore.create(root, {name: value for value, name in NAMES.items()})
    for seed in seeds:
        case = generate_phantom(seed, **TINY)
        case = shift_appearance(case) if shifted else case
        store.add_case(f"case_{seed}", case.image, organs(case.label))
    return store


def tree_digest(folder):
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def settings(**changes):
    base = dict(epochs=6, max_minutes=3, steps_per_epoch=10, learning_rate=1e-2, patience=10)
    return FinetuneSettings(**{**base, **changes})


def test_finetuning_raises_dice_on_held_out_shifted_cases(tmp_path):
    bundle = load_bundle(unet_bundle(tmp_path / "base"))
    train_store = make_store(tmp_path / "train", [1, 2, 3])
    held_out = make_store(tmp_path / "held_out", [101, 102])
    _, before = drain(evaluate(bundle, held_out, device="cpu"))
    steps, result = drain(finetune(bundle, train_store, VersionStore(tmp_path / "versions"), settings(),
                                   device="cpu"))
    assert result.version.path == tmp_path / "versions" / "v001"
    assert any(getattr(s, "val_dice", None) is not None for s in steps)
    _, after = drain(evaluate(load_bundle(result.version.path), held_out, device="cpu"))
    assert after["mean_dice"] > before["mean_dice"] + 0.1, (before, after)
    record = json.loads((result.version.path / "docs" / "version.json").read_text())
    assert record["parent"] == str(bundle.path) and record["cases"] == ["case_1", "case_2"]
    assert record["validation_cases"] == ["case_3"] and "date" in record
    assert [h["epoch"] for h in record["history"]] == [1, 2, 3, 4, 5, 6]


def test_cancel_leaves_earlier_versions_byte_identical(tmp_path):
    bundle = load_bundle(unet_bundle(tmp_path / "base"))
    store = make_store(tmp_path / "cases", [1, 2])
    versions = VersionStore(tmp_path / "versions")
    drain(finetune(bundle, store, versions, settings(epochs=1), device="cpu"))
    before = tree_digest(versions.root)
    job = finetune(load_bundle(versions.root / "v001"), store, versions, settings(epochs=50), device="cpu")
    for _ in range(8):
        next(job)
    job.close()
    assert tree_digest(versions.root) == before
    assert [v.name for v in versions.versions()] == ["v001"]
    assert not [p for p in versions.root.iterdir() if p.name.startswith(".")], "no staging folder left behind"


def base_dice_of(step) -> float | None:
    """The base model's validation Dice from finetune's set-up message, else None."""
    prefix = "base model validation Dice "
    return float(step[len(prefix):]) if isinstance(step, str) and step.startswith(prefix) else None


def test_cancel_keeps_the_best_epoch_once_one_beat_the_base_model(tmp_path):
    bundle = load_bundle(unet_bundle(tmp_path / "base"))
    store = make_store(tmp_path / "cases", [1, 2])
    versions = VersionStore(tmp_path / "versions")
    job = finetune(bundle, store, versions, settings(epochs=50, keep_best_on_cancel=True, learning_rate=5e-3),
                   device="cpu")
    base = best = None
    while best is None:                 # runs until an epoch beats the base model (50 epochs at most)
        step = next(job)
        base = base_dice_of(step) if base is None else base
        dice = getattr(step, "val_dice", None)
        best = dice if dice is not None and dice > base + 1e-3 else None   # the message rounds to 4 places
    job.close()
    (kept,) = versions.versions()
    assert kept.record["cancelled"] is True
    assert kept.record["best_validation_dice"] == pytest.approx(best, abs=1e-4)


def test_cancel_keeps_nothing_when_no_epoch_beat_the_base_model(tmp_path):
    bundle = load_bundle(unet_bundle(tmp_path / "base"))
    store = make_store(tmp_path / "cases", [1, 2])
    versions = VersionStore(tmp_path / "versions")
    # Learning rate 0: every epoch validates exactly as the base model does, so none beats it.
    job = finetune(bundle, store, versions, settings(epochs=50, keep_best_on_cancel=True, learning_rate=0.0),
                   device="cpu")
    base, validated = None, []
    while len(validated) < 2:
        step = next(job)
        base = base_dice_of(step) if base is None else base
        if getattr(step, "val_dice", None) is not None:
            validated.append(step.val_dice)
    job.close()
    assert validated == pytest.approx([base, base], abs=1e-4)
    assert versions.versions() == []
    assert not versions.root.exists() or not any(versions.root.iterdir()), "no staging folder left either"


def test_correction_aware_loss_weighs_edits(tmp_path):
    import torch

    from napari_medvision.core.training.finetune import CorrectionAwareLoss

    logits = torch.zeros(1, 2, 4, 4, 4)
    labels = torch.zeros(1, 1, 4, 4, 4)
    labels[..., 0, 0, 0] = 1
    edit = torch.zeros(1, 1, 4, 4, 4)
    edit[..., 0, 0, 0] = 1
    plain = CorrectionAwareLoss(0.0)(logits, labels, {"edit": edit})
    weighted = CorrectionAwareLoss(10.0)(logits, labels, {"edit": edit})
    assert torch.isclose(plain, weighted)  # uniform logits: every voxel's CE is the same
    logits[:, 1, 0, 0, 0] = 5.0            # now the edited voxel is right: weighting it lowers the loss
    assert CorrectionAwareLoss(10.0)(logits, labels, {"edit": edit}) < CorrectionAwareLoss(0.0)(logits, labels, {})


def test_edit_masks_are_recorded(tmp_path):
    store = CaseStore.create(tmp_path / "s", {"background": 0, "liver": 1, "lung": 2})
    case = generate_phantom(3, **TINY)
    label = organs(case.label)
    corrected = label.array.copy()
    corrected[10, 20:25, 20:25] = 1
    store.add_case("c1", case.image, label.with_array(corrected), model_output=label)
    edits = store.read_edits("c1").array
    assert edits.sum() == int((corrected != label.array).sum()) > 0
    store.remove_case("c1")
    assert store.case_ids() == []


def test_labels_the_model_lacks_are_refused(tmp_path):
    bundle = load_bundle(unet_bundle(tmp_path / "base"))
    store = CaseStore.create(tmp_path / "s", {"background": 0, "liver": 1, "lung": 2, "tumour": 5})
    case = generate_phantom(3, **TINY)
    store.add_case("c1", case.image, case.label)
    with pytest.raises(ModelError, match="not supported"):
        drain(finetune(bundle, store, VersionStore(tmp_path / "v"), settings(), device="cpu"))


def test_empty_store_is_refused(tmp_path):
    bundle = load_bundle(unet_bundle(tmp_path / "base"))
    store = CaseStore.create(tmp_path / "s", {"background": 0})
    with pytest.raises(MedvisionError, match="no cases"):
        drain(finetune(bundle, store, VersionStore(tmp_path / "v"), settings(), device="cpu"))


def test_cli_finetune_and_evaluate(tmp_path):
    bundle = unet_bundle(tmp_path / "base")
    make_store(tmp_path / "cases", [1, 2])
    out = tmp_path / "models" / "tuned"
    run = lambda *a: subprocess.run([sys.executable, "-m", "napari_medvision.cli", *map(str, a)],  # noqa: E731
                                    capture_output=True, text=True, encoding="utf-8", timeout=600)
    result = run("finetune", "--model", bundle, "--cases", tmp_path / "cases", "--output", out, "--epochs", 1,
                 "--device", "cpu", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["version"] == str(out) and summary["epochs"][0]["epoch"] == 1
    assert load_bundle(out).task == "segmentation"
    evaluation = json.loads(run("evaluate", "--model", out, "--cases", tmp_path / "cases", "--json").stdout)
    assert evaluation["cases"] == 2 and set(evaluation["dice"]) <= {"liver", "lung"}
    again = run("finetune", "--model", bundle, "--cases", tmp_path / "cases", "--output", out, "--json")
    assert again.returncode == 2 and "never overwrites" in again.stderr


def test_finetune_works_with_the_public_spleen_bundle_config(shared_data, tmp_path):
    from tests.bundles import spleen_bundle

    bundle = load_bundle(spleen_bundle(shared_data, tmp_path / "spleen"))
    store = CaseStore.create(tmp_path / "cases", {"background": 0, "spleen": 1})
    for seed in (1, 2):
        case = generate_phantom(seed, shape=(16, 40, 40), spacing=(4.0, 4.0, 6.0))
        store.add_case(f"c{seed}", case.image, case.label.with_array((case.label.array == 4).astype(np.uint8)))
    _, result = drain(finetune(bundle, store, VersionStore(tmp_path / "versions"),
                               settings(epochs=1, steps_per_epoch=1, batch_size=1), device="cpu"))
    assert result.version is not None and load_bundle(result.version.path).labels == {1: "spleen"}
