"""``medvision import`` / ``export``: models land whole in the user's folder, exported graphs match torch."""

from __future__ import annotations

import json
from contextlib import redirect_stdout
from io import StringIO

import numpy as np
import pytest
import SimpleITK as sitk

from napari_medvision import cli
from napari_medvision.core.errors import ModelError
from napari_medvision.core.models.importer import NetworkFacts, import_model
from napari_medvision.core.phantom import generate_phantom
from tests.bundles import unet_bundle

#: What tests/bundles.py's unet_bundle config states, as import facts.
UNET_FACTS = ["--labels", "1=liver,2=lung", "--patch-size", "32", "32", "32", "--spacing", "6", "6", "8",
              "--window=-1000,1000", "--orientation", "RAS", "--overlap", "0.25"]


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    folder = tmp_path / "user_models"
    monkeypatch.setenv("MEDVISION_MODELS", str(folder))
    monkeypatch.setenv("MEDVISION_CACHE", str(tmp_path / "cache"))
    return folder


def run_cli(*args) -> tuple[int, object]:
    out = StringIO()
    with redirect_stdout(out):
        code = cli.main([str(a) for a in args])
    text = out.getvalue()
    return code, (json.loads(text) if code == 0 and text.strip().startswith(("{", "[")) else text)


@pytest.fixture
def study(tmp_path):
    case = generate_phantom(2, shape=(20, 40, 44), spacing=(6.0, 6.0, 9.0), direction=np.diag([1.0, -1.0, 1.0]))
    path = tmp_path / "study.nii.gz"
    sitk.WriteImage(case.image.to_sitk(), str(path))
    return path


def infer(model, study, out):
    code, record = run_cli("infer", "--model", model, "--input", study, "--output", out, "--device", "cpu", "--json")
    assert code == 0, record
    return sitk.GetArrayFromImage(sitk.ReadImage(str(out)))


def test_bundle_import_is_listed_with_its_kind(tmp_path, user_models):
    source = unet_bundle(tmp_path / "organs")
    code, record = run_cli("import", source, "--name", "my_organs", "--json")
    assert code == 0 and record["kind"] == "bundle" and record["name"] == "my_organs"
    code, listed = run_cli("models", "--json")
    mine = {r["name"]: r for r in listed}["my_organs"]
    assert mine["kind"] == "bundle" and mine["labels"] == {"1": "liver", "2": "lung"}
    assert {"name", "task", "path", "labels", "description"} <= set(mine)
    code, text = run_cli("models")
    assert "my_organs" in text and "bundle" in text
    from napari_medvision.core.models import find_model
    from napari_medvision.core.models.interface import Model

    assert isinstance(find_model("my_organs"), Model)


def test_import_refuses_a_taken_name_and_leaves_nothing_half_done(tmp_path, user_models):
    source = unet_bundle(tmp_path / "organs")
    import_model(source, name="organs")
    with pytest.raises(ModelError, match="already exists"):
        import_model(source, name="organs")
    (tmp_path / "junk").mkdir()
    with pytest.raises(ModelError, match="MONAI bundle folder.*nnU-Net"):
        import_model(tmp_path / "junk", name="junk")
    assert sorted(p.name for p in user_models.iterdir()) == ["organs"]  # no temp folders left


def test_torchscript_round_trip_gives_the_bundle_result(tmp_path, user_models, study):
    bundle = unet_bundle(tmp_path / "organs")
    network_file = tmp_path / "organs.ts"
    code, record = run_cli("export", "--model", bundle, "--format", "torchscript", "--output", network_file,
                           "--json")
    assert code == 0 and record["max_abs_diff"] < 1e-5 and network_file.is_file()
    code, imported = run_cli("import", network_file, "--name", "organs_ts", "--json", *UNET_FACTS)
    assert code == 0 and imported["kind"] == "torchscript"
    assert imported["labels"] == {"1": "liver", "2": "lung"}
    expected = infer(bundle, study, tmp_path / "bundle.nii.gz")
    got = infer("organs_ts", study, tmp_path / "ts.nii.gz")
    assert len(np.unique(expected)) > 1 and np.array_equal(got, expected)


def test_onnx_round_trip_runs_through_onnxruntime(tmp_path, user_models, study):
    pytest.importorskip("onnxruntime")
    bundle = unet_bundle(tmp_path / "organs")
    network_file = tmp_path / "organs.onnx"
    code, record = run_cli("export", "--model", bundle, "--format", "onnx", "--output", network_file, "--json")
    assert code == 0 and record["max_abs_diff"] < 1e-4 and record["window"] == [1, 1, 32, 32, 32]
    code, imported = run_cli("import", network_file, "--name", "organs_onnx", "--json", *UNET_FACTS)
    assert code == 0 and imported["kind"] == "onnx"
    expected = infer(bundle, study, tmp_path / "bundle.nii.gz")
    got = infer("organs_onnx", study, tmp_path / "onnx.nii.gz")
    assert np.mean(got == expected) > 0.999


def test_bare_network_without_facts_is_told_what_to_give(tmp_path, user_models):
    bundle = unet_bundle(tmp_path / "organs")
    run_cli("export", "--model", bundle, "--format", "torchscript", "--output", tmp_path / "n.ts")
    with pytest.raises(ModelError, match="--labels"):
        import_model(tmp_path / "n.ts")
    with pytest.raises(ModelError, match="--patch-size"):
        import_model(tmp_path / "n.ts", facts=NetworkFacts(labels={1: "a"}, patch_size=()))
    (tmp_path / "state.pt").write_bytes(b"not torchscript")
    with pytest.raises(ModelError, match="not a TorchScript file"):
        import_model(tmp_path / "state.pt", facts=NetworkFacts(labels={1: "a"}, patch_size=(8, 8, 8)))
    assert not user_models.exists() or not list(user_models.iterdir())


def test_export_of_a_non_segmentation_model_is_refused(tmp_path):
    from tests.bundles import classifier_bundle

    code = cli.main(["export", "--model", str(classifier_bundle(tmp_path / "cls")), "--format", "onnx",
                     "--output", str(tmp_path / "c.onnx")])
    assert code == 2 and not (tmp_path / "c.onnx").exists()
