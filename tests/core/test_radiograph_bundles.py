"""Public-zoo-shaped 2D bundles give through medvision what plain MONAI gives from the file.

Plain MONAI: ``LoadImaged`` on the PNG / JPEG, then the config's own preprocessing, network,
inferer and postprocessing. medvision: ``read_volume`` (the CLI's path) and the napari layer
round trip (the dock's path). Random weights; the outputs must agree to float tolerance.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image

from napari_medvision.core.inference import classify, segment
from napari_medvision.core.io import read_volume
from napari_medvision.core.models import load_bundle
from napari_medvision._napari.layers import image_layer_data, layer_volume, volume_from_layer

from ..bundles import write_bundle
from ..conftest import drain

#: The breast density bundle's pattern (Inception-v3 there, a 2D DenseNet here): RGB, channel last.
_BREAST_DENSITY_PRE = [
    {"_target_": "LoadImaged", "keys": "image", "image_only": True},
    {"_target_": "EnsureChannelFirstd", "keys": "image", "channel_dim": 2},
    {"_target_": "ScaleIntensityd", "keys": "image", "minv": 0.0, "maxv": 1.0},
    {"_target_": "Resized", "keys": "image", "spatial_size": [48, 48]},
    {"_target_": "EnsureTyped", "keys": "image"},
]
#: A grey radiograph classifier: no channel in the file, one added.
_GREY_PRE = [
    {"_target_": "LoadImaged", "keys": "image"},
    {"_target_": "EnsureChannelFirstd", "keys": "image"},
    {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
    {"_target_": "NormalizeIntensityd", "keys": "image"},
    {"_target_": "Resized", "keys": "image", "spatial_size": [40, 40]},
]
_POST = [{"_target_": "Activationsd", "keys": "pred", "softmax": True}]


def _classifier(folder, pre, in_channels, classes=4):
    """A 2D DenseNet121 bundle; Grad-CAM on its last feature map (``class_layers.relu``), as MONAI's docs do."""
    config = {
        "imports": ["$import torch"],
        "network_def": {"_target_": "DenseNet121", "spatial_dims": 2, "in_channels": in_channels,
                        "out_channels": classes},
        "preprocessing": {"_target_": "Compose", "transforms": copy.deepcopy(pre)},
        "inferer": {"_target_": "SimpleInferer"},
        "postprocessing": {"_target_": "Compose", "transforms": copy.deepcopy(_POST)},
    }
    metadata = {"name": folder.name, "network_data_format": {
        "inputs": {"image": {"num_channels": in_channels, "spatial_shape": [48, 48]}},
        "outputs": {"pred": {"type": "probabilities", "channel_def": {str(i): f"class {i}" for i in range(classes)}}}},
        "medvision": {"cam_layer": "class_layers.relu"}}
    return write_bundle(folder, config, metadata)


def _plain_monai(bundle_dir, picture):
    """What MONAI's own pieces give for the file: probabilities ``(classes,)``."""
    config = json.loads((bundle_dir / "configs" / "inference.json").read_text())
    parser = ConfigParser(config)
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(bundle_dir / "models" / "model.pt", weights_only=True))
    network.eval()
    data = parser.get_parsed_content("preprocessing")({"image": str(picture)})
    with torch.no_grad():
        data["pred"] = parser.get_parsed_content("inferer")(data["image"][None], network)[0]
    return parser.get_parsed_content("postprocessing")(data)["pred"].numpy()


def _from_layer(volume):
    data, kwargs, _ = image_layer_data(volume, "x-ray")
    return volume_from_layer(data, kwargs)


def _probabilities(bundle_dir, volume):
    result = drain(classify(load_bundle(bundle_dir), volume, device="cpu", explain=True))[1]
    assert result.heatmap is not None and result.heatmap.shape == volume.shape
    return np.array(list(result.probabilities.values()))


@pytest.mark.parametrize("colour", ["rgb", "grey", "grey16"])
def test_2d_classifier_gives_plain_monai_outputs(tmp_path, colour):
    rng = np.random.default_rng(3)
    if colour == "rgb":
        pixels = rng.integers(0, 256, (37, 52, 3), dtype=np.uint8)
        pixels[5:20, 10:30, 0] = 250   # a red patch: channels must not be averaged or reordered
    elif colour == "grey":
        pixels = rng.integers(0, 256, (37, 52), dtype=np.uint8)
    else:
        pixels = rng.integers(0, 65535, (37, 52), dtype=np.uint16)
    picture = tmp_path / f"film {colour}.png"
    Image.fromarray(pixels).save(picture)
    pre, channels = (_BREAST_DENSITY_PRE, 3) if colour == "rgb" else (_GREY_PRE, 1)
    bundle_dir = _classifier(tmp_path / f"{colour}_classifier", pre, channels)

    expected = _plain_monai(bundle_dir, picture)
    volume = read_volume(picture)
    np.testing.assert_allclose(_probabilities(bundle_dir, volume), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(_probabilities(bundle_dir, _from_layer(volume)), expected, rtol=1e-4, atol=1e-6)


def test_jpeg_samples_are_the_ones_monai_decodes(tmp_path):
    from monai.transforms import LoadImage

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 41, 3), dtype=np.uint8)).save(tmp_path / "photo.jpg", quality=70)
    monai_image = LoadImage(image_only=True)(str(tmp_path / "photo.jpg"))
    volume = read_volume(tmp_path / "photo.jpg")
    np.testing.assert_array_equal(volume.channels[0].swapaxes(0, 1), monai_image.numpy())


def test_rgb_picture_becomes_an_rgb_layer_and_comes_back(tmp_path):
    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[..., 1] = 180
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    volume = read_volume(tmp_path / "colour.png")
    data, kwargs, kind = image_layer_data(volume, "colour")
    assert kind == "image" and kwargs["rgb"] is True and data.shape == (1, 6, 7, 3)
    back = volume_from_layer(data, kwargs)
    np.testing.assert_array_equal(back.channels, volume.channels)
    np.testing.assert_allclose(back.array, 0.587 * 180, rtol=1e-5)
    assert back.metadata["picture"]["mode"] == "RGB"


def test_2d_segmentation_of_a_picture_matches_monai(tmp_path):
    """A grey 2D UNet bundle (Invertd in its postprocessing) on a PNG: labels equal MONAI's, on the picture's grid."""
    pre = [{"_target_": "LoadImaged", "keys": "image"}, {"_target_": "EnsureChannelFirstd", "keys": "image"},
           {"_target_": "ScaleIntensityd", "keys": "image"},
           {"_target_": "Resized", "keys": "image", "spatial_size": [32, 32]}]
    post = [{"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
             "nearest_interp": False},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True}]
    config = {"network_def": {"_target_": "UNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 3,
                              "channels": [8, 16], "strides": [2]},
              "preprocessing": {"_target_": "Compose", "transforms": pre},
              "inferer": {"_target_": "SimpleInferer"},
              "postprocessing": {"_target_": "Compose", "transforms": post}}
    metadata = {"network_data_format": {"outputs": {"pred": {"type": "image", "channel_def": {
        "0": "background", "1": "lung", "2": "heart"}}}}}
    bundle_dir = write_bundle(tmp_path / "seg2d", config, metadata)
    pixels = np.random.default_rng(1).integers(0, 256, (45, 38), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "chest.png")

    parser = ConfigParser(copy.deepcopy(config))
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(bundle_dir / "models" / "model.pt", weights_only=True))
    network.eval()
    data = parser.get_parsed_content("preprocessing")({"image": str(tmp_path / "chest.png")})
    with torch.no_grad():
        data["pred"] = network(data["image"][None])[0]
    expected = parser.get_parsed_content("postprocessing")(data)["pred"].numpy()[0].T   # (x, y) -> (y, x)

    result = drain(segment(load_bundle(bundle_dir), _from_layer(read_volume(tmp_path / "chest.png")), device="cpu"))[1]
    assert result.labels.shape == (1, 45, 38)
    np.testing.assert_array_equal(result.labels.array[0], expected)
    assert len(np.unique(expected)) > 1   # a real comparison, not two blank maps


def _picture(tmp_path, name, pixels):
    Image.fromarray(pixels).save(tmp_path / name)
    return read_volume(tmp_path / name)


def test_grey_x_ray_saved_as_rgb_goes_to_a_grey_model_as_one_channel(tmp_path):
    grey = np.random.default_rng(7).integers(0, 256, (37, 52), dtype=np.uint8)
    bundle_dir = _classifier(tmp_path / "grey", _GREY_PRE, 1, classes=2)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    expected = _plain_monai(bundle_dir, tmp_path / "grey.png")
    as_rgb = _picture(tmp_path, "as rgb.png", np.repeat(grey[..., None], 3, axis=-1))
    result = drain(classify(load_bundle(bundle_dir), as_rgb, device="cpu", explain=False))[1]
    np.testing.assert_allclose(list(result.probabilities.values()), expected, rtol=1e-4, atol=1e-6)
    assert any("one grey channel" in note for note in result.notes)


def test_really_coloured_picture_for_a_grey_model_is_refused_clearly(tmp_path):
    from napari_medvision.core.errors import ModelError

    colour = np.random.default_rng(8).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    bundle = load_bundle(_classifier(tmp_path / "grey", _GREY_PRE, 1, classes=2))
    with pytest.raises(ModelError, match="takes one grey channel and this is a colour picture"):
        drain(classify(bundle, _picture(tmp_path, "photo.png", colour), device="cpu"))


def test_grey_radiograph_goes_to_an_rgb_model_as_three_equal_channels(tmp_path):
    """What the breast density bundle would get from the same film saved as an RGB PNG."""
    grey = np.random.default_rng(9).integers(0, 256, (37, 52), dtype=np.uint8)
    bundle_dir = _classifier(tmp_path / "rgb", _BREAST_DENSITY_PRE, 3)
    Image.fromarray(np.repeat(grey[..., None], 3, axis=-1)).save(tmp_path / "as rgb.png")
    expected = _plain_monai(bundle_dir, tmp_path / "as rgb.png")
    result = drain(classify(load_bundle(bundle_dir), _picture(tmp_path, "grey.png", grey), device="cpu",
                            explain=False))[1]
    np.testing.assert_allclose(list(result.probabilities.values()), expected, rtol=1e-4, atol=1e-6)
    assert any("three equal channels" in note for note in result.notes)


def test_volume_to_a_2d_classifier_is_refused_clearly(tmp_path):
    from napari_medvision.core.errors import ModelError
    from napari_medvision.core.volume import Volume

    bundle = load_bundle(_classifier(tmp_path / "grey", _GREY_PRE, 1, classes=2))
    with pytest.raises(ModelError, match="is a 2D model and the image is 3D"):
        drain(classify(bundle, Volume(np.zeros((5, 20, 20), np.float32)), device="cpu"))


def test_cli_infer_runs_an_rgb_bundle_on_a_png(tmp_path, capsys):
    from napari_medvision.cli import main

    rgb = np.random.default_rng(10).integers(0, 256, (37, 52, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "mammo.png")
    bundle_dir = _classifier(tmp_path / "density", _BREAST_DENSITY_PRE, 3)
    expected = _plain_monai(bundle_dir, tmp_path / "mammo.png")
    assert main(["infer", "--model", str(bundle_dir), "--input", str(tmp_path / "mammo.png"), "--device", "cpu",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose([out["probabilities"][f"class {i}"] for i in range(4)], expected, rtol=1e-4, atol=1e-6)
