"""Trusted bundles with their own scripts/: used as the config says, and kept apart from each other."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from napari_medvision.core.errors import UntrustedCodeError
from napari_medvision.core.inference import run_model
from napari_medvision.core.models import load_bundle
from napari_medvision.core.phantom import generate_phantom
from tests.bundles import detector_bundle, unet_bundle

CONSTANT_NETWORK = '''
import torch


class Constant(torch.nn.Module):
    """Every voxel gets class {label}."""

    def __init__(self, out_channels):
        super().__init__()
        self.out_channels = out_channels
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        logits = torch.zeros((x.shape[0], self.out_channels, *x.shape[2:]), device=x.device) + self.dummy
        logits[:, {label}] = 10.0
        return logits
'''


def scripted_bundle(folder, label: int):
    """A bundle whose network is its own scripts.nets.Constant (class ``label`` everywhere)."""
    unet_bundle(folder)
    (folder / "scripts").mkdir()
    (folder / "scripts" / "__init__.py").write_text("")
    (folder / "scripts" / "nets.py").write_text(CONSTANT_NETWORK.format(label=label))
    config = json.loads((folder / "configs" / "inference.json").read_text())
    config["network_def"] = {"_target_": "scripts.nets.Constant", "out_channels": 3}
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    torch.save({"dummy": torch.zeros(1)}, folder / "models" / "model.pt")
    return folder


def segment_all(bundle, volume):
    engine = run_model(bundle, volume, device="cpu")
    while True:
        try:
            next(engine)
        except StopIteration as stop:
            return stop.value.labels.array


@pytest.fixture
def volume():
    return generate_phantom(1, shape=(12, 32, 32), spacing=(6.0, 6.0, 8.0)).image


def scripts_modules() -> dict:
    """The ``scripts`` modules loaded now (an earlier test may have left the repository's own ``scripts/``)."""
    return {name: module for name, module in sys.modules.items() if name.split(".")[0] == "scripts"}


def test_two_bundles_with_scripts_packages_run_one_after_the_other(tmp_path, volume):
    before, loaded = list(sys.path), scripts_modules()
    first = load_bundle(scripted_bundle(tmp_path / "first", label=1), trusted=True)
    second = load_bundle(scripted_bundle(tmp_path / "second", label=2), trusted=True)
    assert np.all(segment_all(first, volume) == 1)
    assert np.all(segment_all(second, volume) == 2)
    assert scripts_modules() == loaded, "neither bundle's scripts stay imported"
    assert sys.path == before


def test_an_existing_scripts_module_is_put_back(tmp_path, volume, monkeypatch):
    sentinel = type(sys)("scripts")
    monkeypatch.setitem(sys.modules, "scripts", sentinel)
    bundle = load_bundle(scripted_bundle(tmp_path / "b", label=2), trusted=True)
    assert np.all(segment_all(bundle, volume) == 2)
    assert sys.modules["scripts"] is sentinel


def test_untrusted_bundle_with_scripts_is_refused(tmp_path, volume):
    loaded = scripts_modules()
    bundle = load_bundle(scripted_bundle(tmp_path / "b", label=1))
    with pytest.raises(UntrustedCodeError, match="--trust"):
        segment_all(bundle, volume)
    assert scripts_modules() == loaded, "nothing of the bundle's scripts was imported"


INFERER = '''
from monai.inferers import Inferer


class RetinaNetInferer(Inferer):
    """Runs the detector on the whole image (a zoo-style custom inferer); counts its calls."""

    calls = 0

    def __init__(self, detector):
        super().__init__()
        self.detector = detector

    def __call__(self, inputs, network, *args, **kwargs):
        RetinaNetInferer.calls += 1
        self.detector.network = network
        return self.detector(inputs, use_inferer=False)
'''


def test_zoo_style_detection_bundle_uses_its_own_inferer(tmp_path):
    folder = detector_bundle(tmp_path / "nodules")
    (folder / "scripts").mkdir()
    (folder / "scripts" / "__init__.py").write_text("")
    (folder / "scripts" / "detection_inferer.py").write_text(INFERER)
    config = json.loads((folder / "configs" / "inference.json").read_text())
    config["inferer"] = {"_target_": "scripts.detection_inferer.RetinaNetInferer", "detector": "@detector"}
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    with pytest.raises(UntrustedCodeError, match="scripts.detection_inferer"):
        load_bundle(folder).check_trust()
    bundle = load_bundle(folder, trusted=True)
    case = generate_phantom(3, shape=(32, 64, 64), spacing=(6.0, 6.0, 8.0))
    engine = run_model(bundle, case.image, device="cpu", score_threshold=0.0)
    while True:
        try:
            next(engine)
        except StopIteration as stop:
            result = stop.value
            break
    model_inferer = type(__import__("napari_medvision.core.models.cache", fromlist=["x"]).loaded_model(
        bundle, torch.device("cpu")).inferer)
    assert model_inferer.__name__ == "RetinaNetInferer" and model_inferer.calls == 1
    assert result.boxes and all(len(b.box_world) == 6 for b in result.boxes)
