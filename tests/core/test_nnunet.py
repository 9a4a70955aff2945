"""nnU-Net v2 models: results equal nnunetv2's own prediction, checkpoints are never unpickled, bad input is named.

The model is genuine: nnU-Net's fingerprint extractor and planner on three phantom cases,
and per fold an (untrained) network saved by ``nnUNetTrainer.save_checkpoint``
(tests/core/nnunet_builder.py). The reference is nnunetv2's own file-to-file prediction.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("nnunetv2", reason="nnU-Net tests need the nnunet extra: pip install 'napari-medvision[nnunet]'")

from napari_medvision import cli  # noqa: E402
from napari_medvision.core.errors import CancelledError, ModelError, UntrustedCodeError  # noqa: E402
from napari_medvision.core.inference import run_model  # noqa: E402
from napari_medvision.core.io import read_volume  # noqa: E402
from napari_medvision.core.models import find_model, load_model, load_nnunet  # noqa: E402
from napari_medvision.core.models.archive import safe_extract  # noqa: E402
from napari_medvision.core.phantom import generate_phantom, write_phantom_dataset  # noqa: E402

from .nnunet_builder import DATASET, MODEL, REGIONS  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nnunet_results(tmp_path_factory) -> Path:
    """nnU-Net's results folder: planned 3d_fullres models with folds 0 and 1 (random weights) of
    Dataset001 (one channel, labels) and Dataset002 (two channels, region labels)."""
    root = tmp_path_factory.mktemp("nnunet")
    for dataset in (DATASET, REGIONS):
        write_phantom_dataset(root / "raw" / dataset, cases=3, seed=0, shape=(16, 32, 40), spacing=(2.0, 2.0, 4.0),
                              max_lesions=0)
    regions = root / "raw" / REGIONS
    for first in sorted((regions / "imagesTr").glob("*_0000.nii.gz")):
        image = sitk.ReadImage(str(first))
        sitk.WriteImage(sitk.Cast(-image, sitk.sitkFloat32), str(first).replace("_0000", "_0001"))
    dataset = json.loads((regions / "dataset.json").read_text())
    dataset.update(channel_names={"0": "CT", "1": "inverted"}, regions_class_order=[1, 2, 3],
                   labels={"background": 0, "organs": [2, 3, 4, 5], "abdomen": [3, 4, 5], "liver": 3})
    (regions / "dataset.json").write_text(json.dumps(dataset))
    env = dict(os.environ, nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "pre"),
               nnUNet_results=str(root / "results"), nnUNet_def_n_proc="1")
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("nnunet_builder.py")), "0", "1"], env=env,
                          capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return root / "results"


@pytest.fixture(scope="module")
def nnunet_model(nnunet_results) -> Path:
    return nnunet_results / DATASET / MODEL


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A phantom on another grid than the model's (spacing, flipped x, shifted origin), as a file."""
    direction = np.diag([-1.0, 1.0, 1.0])
    case = generate_phantom(seed=5, shape=(16, 28, 30), spacing=(2.3, 2.1, 3.5), direction=direction)
    path = tmp_path_factory.mktemp("study") / "case_0000.nii.gz"
    sitk.WriteImage(replace(case.image, origin=(10.5, -20.25, 33.0)).to_sitk(), str(path))
    return path


def nnunet_reference(model_dir: Path, image, out_dir: Path, folds, mirroring: bool) -> sitk.Image:
    """nnunetv2's own prediction, file to file (what nnUNetv2_predict runs, without worker processes)."""
    images = [str(p) for p in image] if isinstance(image, (list, tuple)) else [str(image)]
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(use_mirroring=mirroring, device=torch.device("cpu"), perform_everything_on_device=False,
                                allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model_dir), use_folds=tuple(folds))
    out_dir.mkdir(parents=True, exist_ok=True)
    predictor.predict_from_files_sequential([images], str(out_dir), save_probabilities=False, overwrite=True)
    return sitk.ReadImage(str(out_dir / Path(images[0]).name.replace("_0000", "")))


def dice_per_label(a: np.ndarray, b: np.ndarray) -> dict[int, float]:
    return {int(v): 2 * np.sum((a == v) & (b == v)) / (np.sum(a == v) + np.sum(b == v))
            for v in np.union1d(np.unique(a), np.unique(b)) if v != 0}


def run_cli(*args) -> tuple[int, dict]:
    from contextlib import redirect_stdout
    from io import StringIO

    out = StringIO()
    with redirect_stdout(out):
        code = cli.main(list(args))
    return code, (json.loads(out.getvalue()) if code == 0 else {})


@pytest.mark.parametrize("folds, mirroring", [(("0", "1"), True), (("1",), False)])
def test_cli_result_equals_nnunet_prediction(nnunet_model, study, tmp_path, folds, mirroring):
    reference = nnunet_reference(nnunet_model, study, tmp_path / "reference", folds, mirroring)
    expected = sitk.GetArrayFromImage(reference)
    assert len(np.unique(expected)) >= 3, "the reference should hold several labels for the comparison to mean much"
    options = ([] if folds == ("0", "1") else ["--folds", *folds]) + ([] if mirroring else ["--no-tta"])
    code, record = run_cli("infer", "--model", str(nnunet_model), "--input", str(study),
                           "--output", str(tmp_path / "ours.nii.gz"), "--device", "cpu", "--json", *options)
    assert code == 0
    ours = sitk.ReadImage(str(tmp_path / "ours.nii.gz"))
    got = sitk.GetArrayFromImage(ours)
    dice = dice_per_label(got, expected)
    print("Dice per label vs nnunetv2:", dice, "identical voxels:", float(np.mean(got == expected)))
    assert min(dice.values()) >= 0.99
    source = sitk.ReadImage(str(study))
    for key in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert np.allclose(getattr(ours, key)(), getattr(source, key)(), atol=1e-6), key
    dataset = json.loads((nnunet_model / "dataset.json").read_text())
    assert record["labels"] == {str(v): k for k, v in dataset["labels"].items() if v != 0}


def test_progress_counts_windows_and_cancel_stops_the_run(nnunet_model, study):
    engine = run_model(load_nnunet(nnunet_model), read_volume(study), device="cpu", folds=["0"])
    predicting = []
    for step in engine:
        if step.message.startswith("predicting"):
            predicting.append(step)
            break
    assert predicting and predicting[0].total % 8 == 0  # windows x 8 mirrorings (3 axes), one fold
    engine.close()  # what Cancel does: the prediction thread stops at its next window
    with pytest.raises(StopIteration):
        next(engine)


def test_cancel_flag_raises_in_the_network_hook():
    from napari_medvision.core.inference.nnunet_engine import _Counter

    counter = _Counter(4)
    counter.hook(None, ())
    counter.cancelled.set()
    with pytest.raises(CancelledError):
        counter.hook(None, ())
    assert counter.done == 1


def test_checkpoint_that_would_run_code_is_refused(nnunet_model, study, tmp_path):
    folder = tmp_path / MODEL
    shutil.copytree(nnunet_model, folder)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    with open(folder / "fold_0" / "checkpoint_final.pth", "wb") as stream:
        pickle.dump({"network_weights": Payload(), "trainer_name": "x", "init_args": {}}, stream)
    with pytest.raises(UntrustedCodeError, match="refused"):
        list(run_model(load_nnunet(folder), read_volume(study), device="cpu", folds=["0"]))
    assert not marker.exists()
    code = cli.main(["infer", "--model", str(folder), "--input", str(study), "--folds", "0"])
    assert code == 2 and not marker.exists()


def test_plans_naming_a_foreign_network_class_need_trust(nnunet_model, tmp_path):
    folder = tmp_path / MODEL
    shutil.copytree(nnunet_model, folder)
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = "os.system"
    (folder / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(UntrustedCodeError, match="os.system"):
        load_nnunet(folder).check_architecture()
    load_nnunet(folder, trusted=True).check_architecture()


def test_missing_fold_and_wrong_channel_count_are_named(nnunet_model, study, capsys):
    assert cli.main(["infer", "--model", str(nnunet_model), "--input", str(study), "--folds", "3"]) == 2
    assert "no fold 3" in capsys.readouterr().err
    assert cli.main(["infer", "--model", str(nnunet_model), "--input", str(study), "--input", str(study)]) == 2
    err = capsys.readouterr().err
    assert "1 input image" in err and "CT" in err


def test_folder_of_no_known_kind_lists_the_kinds(tmp_path):
    (tmp_path / "junk").mkdir()
    with pytest.raises(ModelError, match="MONAI bundle.*nnU-Net v2 results folder"):
        load_model(tmp_path / "junk")


def test_missing_nnunetv2_names_the_extra(nnunet_model, monkeypatch):
    from napari_medvision.core.models import nnunet_build

    nnunet_build.clear()
    monkeypatch.setitem(sys.modules, "nnunetv2.inference", None)
    with pytest.raises(ModelError, match=r"napari-medvision\[nnunet\]"):
        nnunet_build.built_nnunet(load_nnunet(nnunet_model), __import__("torch").device("cpu"))


def test_export_zip_runs_like_its_folder(nnunet_model, study, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDVISION_CACHE", str(tmp_path / "cache"))
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:  # nnUNetv2_export_model_to_zip's layout
        for path in nnunet_model.rglob("*"):
            if path.is_file():
                zipped.write(path, f"{DATASET}/{MODEL}/{path.relative_to(nnunet_model)}")
        zipped.writestr(f"{DATASET}/{MODEL}/crossval_results_folds_0_1/postprocessing.pkl", b"not extracted")
    model = find_model(archive)
    from napari_medvision.core.models.interface import Model

    assert isinstance(model, Model)
    assert model.kind == "nnunet" and model.available_folds() == ["0", "1"]
    assert not list((tmp_path / "cache").rglob("*.pkl"))
    volume = read_volume(study)
    from_zip = _labels(run_model(model, volume, device="cpu", folds=["0"], tta=False))
    from_folder = _labels(run_model(load_nnunet(nnunet_model), volume, device="cpu", folds=["0"], tta=False))
    assert np.array_equal(from_zip, from_folder)


def _labels(engine) -> np.ndarray:
    while True:
        try:
            next(engine)
        except StopIteration as stop:
            return stop.value.labels.array


def test_unsafe_zips_are_refused(tmp_path):
    traversal = tmp_path / "traversal.zip"
    with zipfile.ZipFile(traversal, "w") as zipped:
        zipped.writestr("../evil.json", "{}")
    with pytest.raises(ModelError, match="unsafe path"):
        safe_extract(traversal, tmp_path / "out1")
    assert not (tmp_path / "evil.json").exists() and not (tmp_path / "out1").exists()
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("fold_0/checkpoint_final.pth", bytes(64 * 1024 * 1024))
    with pytest.raises(ModelError, match="zip bomb"):
        safe_extract(bomb, tmp_path / "out2")
    assert not (tmp_path / "out2").exists() and not list(tmp_path.glob(".out2*"))


def test_region_labels_are_named_as_nnunet_orders_them(nnunet_model, tmp_path):
    folder = tmp_path / MODEL
    shutil.copytree(nnunet_model, folder)
    dataset = json.loads((folder / "dataset.json").read_text())
    dataset.update(labels={"background": 0, "whole tumour": [1, 2, 3], "tumour core": [2, 3], "enhancing": 3},
                   regions_class_order=[1, 2, 3], channel_names={"0": "FLAIR", "1": "T1w", "2": "T1gd", "3": "T2w"})
    (folder / "dataset.json").write_text(json.dumps(dataset))
    model = load_nnunet(folder)
    assert model.labels == {1: "whole tumour", 2: "tumour core", 3: "enhancing"}
    assert model.channel_names == ["FLAIR", "T1w", "T1gd", "T2w"]
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(model.plans).get_label_manager(dataset)
    assert manager.has_regions and len(manager.foreground_regions) == len(model.labels)


def test_import_folder_and_zip_then_run_by_name(nnunet_model, study, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDVISION_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("MEDVISION_CACHE", str(tmp_path / "cache"))
    code, record = run_cli("import", str(nnunet_model), "--json")
    assert code == 0 and record["kind"] == "nnunet" and record["name"] == "Dataset001_Phantom__3d_fullres"
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in nnunet_model.rglob("*"):
            zipped.write(path, f"{DATASET}/{MODEL}/{path.relative_to(nnunet_model)}")
    code, record = run_cli("import", str(archive), "--name", "phantom_zip", "--json")
    assert code == 0 and record["folds"] == ["0", "1"]
    code, listed = run_cli("models", "--json")
    kinds = {r["name"]: r["kind"] for r in listed}
    assert kinds["phantom_zip"] == "nnunet" and kinds["Dataset001_Phantom__3d_fullres"] == "nnunet"
    imported = tmp_path / "models" / "phantom_zip"
    assert sorted(p.name for p in imported.iterdir()) == ["dataset.json", "fold_0", "fold_1", "medvision.json",
                                                         "plans.json"]
    code, record = run_cli("infer", "--model", "phantom_zip", "--input", str(study), "--folds", "0", "--no-tta",
                           "--output", str(tmp_path / "a.nii.gz"), "--json")
    assert code == 0 and record["task"] == "segmentation"
    direct = _labels(run_model(load_nnunet(nnunet_model), read_volume(study), device="cpu", folds=["0"], tta=False))
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "a.nii.gz"))), direct)


def test_two_channel_region_model_equals_nnunet_prediction(nnunet_results, study, tmp_path):
    model_dir = nnunet_results / REGIONS / MODEL
    second = tmp_path / "case_0001.nii.gz"
    sitk.WriteImage(sitk.Cast(-sitk.ReadImage(str(study)), sitk.sitkFloat32), str(second))
    first = tmp_path / "case_0000.nii.gz"
    shutil.copy(study, first)
    reference = nnunet_reference(model_dir, [first, second], tmp_path / "reference", ("0",), False)
    expected = sitk.GetArrayFromImage(reference)
    assert len(np.unique(expected)) >= 2
    code, record = run_cli("infer", "--model", str(model_dir), "--input", str(first), "--input", str(second),
                           "--folds", "0", "--no-tta", "--output", str(tmp_path / "ours.nii.gz"), "--json")
    assert code == 0
    got = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "ours.nii.gz")))
    assert min(dice_per_label(got, expected).values()) >= 0.99
    assert record["labels"] == {"1": "organs", "2": "abdomen", "3": "liver"}


def test_rank_scores_nnunet_studies_by_their_probabilities(nnunet_model, study, tmp_path):
    """nnU-Net gives no entropy map: ``medvision rank`` once scored every study 0; now its probabilities'."""
    folder = tmp_path / "studies"
    folder.mkdir()
    shutil.copy(study, folder / "a.nii.gz")
    inverted = sitk.Cast(-sitk.ReadImage(str(study)), sitk.sitkFloat32)
    sitk.WriteImage(inverted, str(folder / "b.nii.gz"))
    code, records = run_cli("rank", "--model", str(nnunet_model), "--input", str(folder), "--device", "cpu", "--json")
    assert code == 0 and len(records) == 2
    scores = [r["score"] for r in records]
    assert all(0 < s <= 1 for s in scores) and scores == sorted(scores, reverse=True) and scores[0] != scores[1]
