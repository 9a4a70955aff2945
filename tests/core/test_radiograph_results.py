"""Results on 2D studies: labels, boxes and Grad-CAM heatmaps land on the radiograph's own grid."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.bundle import ConfigParser
from monai.data.box_utils import clip_boxes_to_image
from PIL import Image

from napari_medvision.core.errors import ModelError
from napari_medvision.core.inference import classify, detect, segment
from napari_medvision.core.io import read_volume, write_volume
from napari_medvision.core.models import load_bundle
from napari_medvision.core.volume import Volume
from napari_medvision._napari.results import boxes_layer, heatmap_layer, segmentation_layers

from ..bundles import write_bundle
from ..conftest import drain
from .test_radiograph_bundles import _BREAST_DENSITY_PRE, _classifier
from .test_radiograph_dicom import write_radiograph

_DETECTOR_2D = {
    "backbone": {"_target_": "monai.networks.nets.resnet.ResNet", "block": "basic", "layers": [1, 1, 1, 1],
                 "block_inplanes": [8, 16, 32, 64], "spatial_dims": 2, "n_input_channels": 1,
                 "conv1_t_stride": [2, 2], "conv1_t_size": [7, 7]},
    "feature_extractor": {"_target_": "monai.apps.detection.networks.retinanet_network.resnet_fpn_feature_extractor",
                          "backbone": "@backbone", "spatial_dims": 2, "pretrained_backbone": False,
                          "returned_layers": [1, 2], "trainable_backbone_layers": None},
    "network_def": {"_target_": "RetinaNet", "spatial_dims": 2, "num_classes": 1, "num_anchors": 3,
                    "feature_extractor": "@feature_extractor", "size_divisible": [16, 16]},
    "anchor_generator": {"_target_": "monai.apps.detection.utils.anchor_utils.AnchorGeneratorWithAnchorShape",
                         "feature_map_scales": [1, 2, 4], "base_anchor_shapes": [[6, 8], [8, 6], [10, 10]]},
    "detector": {"_target_": "RetinaNetDetector", "network": "@network_def", "anchor_generator": "@anchor_generator"},
    "preprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "LoadImaged", "keys": "image"}, {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "ScaleIntensityd", "keys": "image"}]},
}
_DETECTOR_META = {"network_data_format": {"inputs": {"image": {"num_channels": 1, "spatial_shape": [64, 64]}},
                                          "outputs": {"pred": {"type": "object"}}},
                  "medvision": {"labels": {"0": "nodule"}, "score_threshold": 0.0}}


def _plain_monai_boxes(bundle_dir, picture) -> np.ndarray:
    parser = ConfigParser(copy.deepcopy(_DETECTOR_2D))
    detector = parser.get_parsed_content("detector")
    detector.network.load_state_dict(torch.load(bundle_dir / "models" / "model.pt", weights_only=True))
    detector.set_box_selector_parameters(score_thresh=0.0, nms_thresh=detector.box_selector.nms_thresh,
                                         topk_candidates_per_level=detector.box_selector.topk_candidates_per_level,
                                         detections_per_img=detector.box_selector.detections_per_img)
    detector.eval()
    image = parser.get_parsed_content("preprocessing")({"image": str(picture)})["image"]
    with torch.no_grad():
        out = detector([image.as_tensor()], use_inferer=False)[0]
    return out[detector.target_box_key].numpy()


def test_2d_detector_boxes_match_monai_and_sit_on_the_picture(tmp_path):
    pixels = np.random.default_rng(5).integers(0, 256, (48, 64), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "chest.png")
    bundle_dir = write_bundle(tmp_path / "det2d", _DETECTOR_2D, _DETECTOR_META)
    volume = read_volume(tmp_path / "chest.png")
    result = drain(detect(load_bundle(bundle_dir), volume, device="cpu"))[1]
    expected = _plain_monai_boxes(bundle_dir, tmp_path / "chest.png")
    assert len(result.boxes) > 0
    ours = sorted(tuple(np.round(b.box_world, 3)) for b in result.boxes)
    kept = clip_boxes_to_image(torch.as_tensor(expected, dtype=torch.float64), (64, 48), remove_empty=True)[0]
    # MONAI's (x, y) boxes on the pixel edges -> world mm at pixel centres (spacing 1, origin 0), z on the plane
    theirs = sorted(tuple(np.round([x0 - 0.5, y0 - 0.5, 0.0, x1 - 0.5, y1 - 0.5, 0.0], 3))
                    for x0, y0, x1, y1 in kept.numpy())
    assert ours == theirs
    shapes, kwargs, kind = boxes_layer(result, volume, "det2d")
    assert kind == "shapes" and len(shapes) == len(result.boxes)    # one rectangle each, on the one plane
    first = result.boxes[0].box_world
    np.testing.assert_allclose(shapes[0][:, 0], 0.0)
    np.testing.assert_allclose(shapes[0][0, 1:], [first[1], first[0]], atol=1e-9)   # (y, x) index = mm here


def test_2d_detector_on_a_dicom_radiograph_reports_millimetres(tmp_path):
    stored = np.random.default_rng(2).integers(0, 4000, (48, 64))
    dicom = read_volume(write_radiograph(tmp_path / "dx.dcm", stored, pixel_spacing=(0.2, 0.25)))
    plain = Volume(dicom.array, metadata={"dimension": 2})
    bundle = load_bundle(write_bundle(tmp_path / "det2d", _DETECTOR_2D, _DETECTOR_META))
    in_mm = drain(detect(bundle, dicom, device="cpu"))[1].boxes
    in_pixels = drain(detect(bundle, plain, device="cpu"))[1].boxes
    assert len(in_mm) == len(in_pixels) > 0
    for a, b in zip(in_mm, in_pixels):
        np.testing.assert_allclose(a.box_world, np.asarray(b.box_world) * [0.25, 0.2, 1, 0.25, 0.2, 1], atol=1e-6)


def test_2d_detector_refuses_a_volume(tmp_path):
    bundle = load_bundle(write_bundle(tmp_path / "det2d", _DETECTOR_2D, _DETECTOR_META))
    with pytest.raises(ModelError, match="2D detector and the image is 3D"):
        drain(detect(bundle, Volume(np.zeros((4, 32, 32), np.float32)), device="cpu"))


def test_segmentation_of_a_radiograph_is_written_with_its_geometry(tmp_path):
    from ..bundles import unet2d_bundle

    stored = np.random.default_rng(4).integers(0, 4000, (40, 52))
    volume = read_volume(write_radiograph(tmp_path / "cr.dcm", stored, modality="CR", pixel_spacing=(0.2, 0.25)))
    result = drain(segment(load_bundle(unet2d_bundle(tmp_path / "unet2d")), volume, device="cpu"))[1]
    layers = segmentation_layers(result, "unet2d")
    assert layers[0][0].shape == (1, 40, 52)
    written = sitk.ReadImage(str(write_volume(result.labels, tmp_path / "labels.nii.gz", labels=True)))
    assert written.GetSpacing()[:2] == pytest.approx((0.25, 0.2), abs=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written).reshape(40, 52), result.labels.array[0])


def test_grad_cam_heatmap_of_a_colour_picture_is_a_layer_on_it(tmp_path):
    rgb = np.random.default_rng(6).integers(0, 256, (33, 41, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "mammo.png")
    volume = read_volume(tmp_path / "mammo.png")
    pre = copy.deepcopy(_BREAST_DENSITY_PRE)
    pre[3]["spatial_size"] = [128, 128]    # DenseNet121 divides by 32: a 4x4 map for Grad-CAM to vary over
    bundle = load_bundle(_classifier(tmp_path / "density", pre, 3))
    result = drain(classify(bundle, volume, device="cpu"))[1]
    data, kwargs, kind = heatmap_layer(result, "density")
    assert kind == "image" and data.shape == (1, 33, 41)
    assert data.min() >= 0 and data.max() <= 1 and data.max() > data.min()
    np.testing.assert_allclose(kwargs["affine"], volume.napari_affine())
    assert abs(sum(result.probabilities.values()) - 1) < 1e-5
