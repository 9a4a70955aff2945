"""Bundle loading: trust, weights, registry, devices."""

import json
import os
import pickle

import numpy as np
import pytest
import torch

from napari_medvision.core.errors import ModelError, UntrustedCodeError
from napari_medvision.core.models import choose_device, find_bundle, list_bundles, load_bundle
from tests.bundles import classifier_bundle, detector_bundle, unet_bundle


def test_expression_in_a_used_part_needs_trust(tmp_path):
    folder = unet_bundle(tmp_path / "risky")
    config = json.loads((folder / "configs" / "inference.json").read_text())
    config["network_def"]["channels"] = "$list(range(4, 12, 4))"  # a call: code, not data
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    bundle = load_bundle(folder)
    with pytest.raises(UntrustedCodeError, match=r"network_def::channels.*--trust"):
        bundle.build(torch.device("cpu"))
    trusted = load_bundle(folder, trusted=True)
    assert trusted.build(torch.device("cpu")).network is not None


def test_expressions_only_in_unused_parts_need_no_trust(tmp_path):
    bundle = load_bundle(unet_bundle(tmp_path / "plain"))
    assert "$import os" in bundle.config["imports"]
    assert bundle.code_findings() == []


def test_reference_to_an_expression_is_followed(tmp_path):
    folder = unet_bundle(tmp_path / "indirect")
    config = json.loads((folder / "configs" / "inference.json").read_text())
    config["n_out"] = "$__import__('os').getpid() and 3"
    config["network_def"]["out_channels"] = "@n_out"
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    findings = load_bundle(folder).code_findings()
    assert any("n_out" in f for f in findings)


def test_foreign_target_and_scripts_need_trust(tmp_path):
    folder = unet_bundle(tmp_path / "scripted")
    (folder / "scripts").mkdir()
    config = json.loads((folder / "configs" / "inference.json").read_text())
    config["inferer"] = {"_target_": "scripts.my_inferer.Inferer"}
    config["postprocessing"]["transforms"].append({"_target_": "os.system", "command": "echo pwned"})
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    findings = load_bundle(folder).code_findings()
    assert any("scripts.my_inferer" in f for f in findings)
    assert any("os.system" in f for f in findings)


def test_detector_bundle_with_library_targets_is_trusted(tmp_path):
    assert load_bundle(detector_bundle(tmp_path / "det")).code_findings() == []


def test_weights_pickle_that_would_run_code_is_refused(tmp_path):
    folder = unet_bundle(tmp_path / "evil")

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo should-never-run > " + str(tmp_path / "ran.txt"),))

    with open(folder / "models" / "model.pt", "wb") as handle:
        pickle.dump({"weight": Payload()}, handle)
    with pytest.raises(UntrustedCodeError, match="not plain weights"):
        load_bundle(folder).build(torch.device("cpu"))
    assert not (tmp_path / "ran.txt").exists()


def test_missing_weights(tmp_path):
    folder = unet_bundle(tmp_path / "noweights")
    (folder / "models" / "model.pt").unlink()
    with pytest.raises(ModelError, match="no weights"):
        load_bundle(folder).build(torch.device("cpu"))


def test_weights_that_do_not_fit_name_the_keys(tmp_path):
    folder = unet_bundle(tmp_path / "mismatch", labels={0: "bg", 1: "a"})
    other = unet_bundle(tmp_path / "other", labels={0: "bg", 1: "a", 2: "b", 3: "c"})
    (folder / "models" / "model.pt").write_bytes((other / "models" / "model.pt").read_bytes())
    with pytest.raises(ModelError, match=r"do not fit the network \(wrong shape: model.2.0.conv.weight \(12, 4, 3, 3, 3\) in the file vs \(12, 2, 3, 3, 3\) in the network"):
        load_bundle(folder).build(torch.device("cpu"))


def test_checkpoint_dict_and_ddp_prefix_are_accepted(tmp_path):
    folder = unet_bundle(tmp_path / "ckpt")
    state = torch.load(folder / "models" / "model.pt", weights_only=True)
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, folder / "models" / "model.pt")
    network = load_bundle(folder).build(torch.device("cpu")).network
    for key, value in network.state_dict().items():
        assert torch.equal(value, state[key])


def test_unknown_network_class(tmp_path):
    folder = unet_bundle(tmp_path / "unknown")
    config = json.loads((folder / "configs" / "inference.json").read_text())
    config["network_def"]["_target_"] = "NoSuchNet"
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="cannot build 'network_def'"):
        load_bundle(folder).build(torch.device("cpu"))


def test_torchscript_model(tmp_path):
    folder = unet_bundle(tmp_path / "ts")
    network = load_bundle(folder).build(torch.device("cpu")).network
    torch.jit.save(torch.jit.trace(network, torch.zeros(1, 1, 32, 32, 32)), folder / "models" / "model.ts")
    (folder / "models" / "model.pt").unlink()
    loaded = load_bundle(folder).build(torch.device("cpu")).network
    x = torch.rand(1, 1, 32, 32, 32)
    assert torch.allclose(loaded(x), network(x), atol=1e-5)


def test_not_a_bundle(tmp_path):
    with pytest.raises(ModelError, match="not a MONAI bundle"):
        load_bundle(tmp_path)


def test_registry_finds_user_folder_bundles_by_name(tmp_path, monkeypatch):
    unet_bundle(tmp_path / "models" / "organs_unet")
    classifier_bundle(tmp_path / "models" / "lesion_cls")
    (tmp_path / "models" / "broken").mkdir()
    (tmp_path / "models" / "broken" / "configs").mkdir()
    monkeypatch.setenv("MEDVISION_MODELS", str(tmp_path / "models"))
    names = {b.name: b.task for b in list_bundles()}
    assert names["organs_unet"] == "segmentation" and names["lesion_cls"] == "classification"
    assert "broken" not in names
    assert find_bundle("organs_unet").path == (tmp_path / "models" / "organs_unet").resolve()
    assert find_bundle("test classifier").name == "lesion_cls"
    assert find_bundle(tmp_path / "models" / "lesion_cls").task == "classification"
    with pytest.raises(ModelError, match="no model called 'nope'.*organs_unet"):
        find_bundle("nope")


def test_device_choice(monkeypatch):
    assert choose_device("cpu") == torch.device("cpu")
    with pytest.raises(ModelError, match="unknown device"):
        choose_device("tpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)   # a machine without a GPU
    assert choose_device("auto") == torch.device("cpu")
    with pytest.raises(ModelError, match="no CUDA"):
        choose_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)    # and one with
    assert choose_device("auto") == torch.device("cuda") and choose_device("cuda:1") == torch.device("cuda:1")


def test_summary_record(tmp_path):
    summary = load_bundle(unet_bundle(tmp_path / "u")).summary()
    assert summary["task"] == "segmentation" and summary["labels"] == {"1": "liver", "2": "lung"}
    assert set(summary) == {"name", "task", "path", "labels", "description", "needs_trust", "trust_findings",
                            "trusted", "kind"}
    assert summary["needs_trust"] is False and summary["trust_findings"] == []
    assert summary["kind"] == "bundle"
    assert np.isscalar(summary["description"])
