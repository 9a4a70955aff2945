"""Interactive bundles reach the worker's job as the Annotate dock sends them: a zoo bundle with its
trust, label and the image's geometry; a fine-tuned version of the click model by its folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_medvision.core.errors import UntrustedCodeError
from napari_medvision.core.interactive import Prompts, choose_engine
from napari_medvision.core.interactive.click_unet import ClickUNetEngine, load_network, sample_bundle_path
from napari_medvision.core.interactive.job import segment_job
from napari_medvision.core.interactive.zoo import label_names, zoo_engine
from napari_medvision.core.models import load_bundle
from napari_medvision.core.training.versions import VersionStore
from napari_medvision.core.volume import Volume
from tests.conftest import drain
from tests.core.test_zoo_interactive import scan
from tests.zoo_bundles import deepedit_bundle


def click_model_version(store_root):
    """``STORE/models/interactive_unet/v001``: the shipped weights, written as a fine-tune would."""
    base = load_bundle(sample_bundle_path())
    versions = VersionStore.for_model(store_root, base)
    return versions.write(base, load_network(base.path).state_dict(), {"best_validation_dice": 0.5}).path


def test_deepedit_label_names_come_from_the_config_without_building(tmp_path):
    bundle = load_bundle(deepedit_bundle(tmp_path / "de", probe=True))
    assert label_names(bundle) == ["organ", "background"]


def test_the_job_runs_a_trusted_zoo_bundle_with_the_image_geometry(tmp_path):
    folder = deepedit_bundle(tmp_path / "probe", probe=True)
    volume = scan(2)
    flipped = Volume(volume.array, volume.spacing, volume.origin, np.diag([-1.0, 1.0, 1.0]))
    prompts = Prompts([(9, 20, 6)], [(3, 3, 25)])
    _, mask = drain(segment_job(flipped.array, flipped.spacing, prompts, str(folder), trusted=True, label="organ",
                                device="cpu", origin=flipped.origin, direction=flipped.direction))
    expected = zoo_engine(folder, trusted=True, device="cpu", label="organ").segment_volume(flipped, prompts)
    assert mask.dtype == np.uint8 and mask[9, 20, 6] == 1 and np.array_equal(mask, expected)
    with pytest.raises(UntrustedCodeError, match="runs its own code"):
        drain(segment_job(flipped.array, flipped.spacing, prompts, str(folder), device="cpu",
                          origin=flipped.origin, direction=flipped.direction))


def test_a_fine_tuned_version_of_the_click_model_is_an_engine(tmp_path):
    path = click_model_version(tmp_path / "store")
    image = np.zeros((24, 40, 40), np.float32)
    image[8:16, 12:28, 12:28] = 100
    engine = choose_engine(image, (1.0, 1.0, 1.0), str(path))
    assert isinstance(engine, ClickUNetEngine) and engine.bundle_path == path.resolve()
    assert choose_engine(image, (1.0, 1.0, 1.0), str(path)) is engine        # its network is built once
    _, mask = drain(segment_job(image, (1.0, 1.0, 1.0), Prompts([(12, 20, 20)]), str(path)))
    same_weights = ClickUNetEngine().segment(image, (1.0, 1.0, 1.0), Prompts([(12, 20, 20)]))
    assert mask[12, 20, 20] == 1 and np.array_equal(mask, same_weights)


def test_a_click_model_bundle_that_runs_code_needs_trust(tmp_path):
    path = click_model_version(tmp_path / "store")
    config_path = path / "configs" / "inference.json"
    config = json.loads(config_path.read_text())
    config["network_def"]["in_channels"] = "$__import__('math').floor(4.5)"
    config_path.write_text(json.dumps(config))
    image = np.zeros((16, 16, 16), np.float32)
    with pytest.raises(UntrustedCodeError, match="runs its own code"):
        choose_engine(image, (1.0, 1.0, 1.0), str(path))
    assert isinstance(choose_engine(image, (1.0, 1.0, 1.0), str(path), trusted=True), ClickUNetEngine)
