"""The three engines on CPU with bundles made in the test."""

import sys

import numpy as np
import pytest

from napari_medvision.core.errors import CancelledError, ModelError
from napari_medvision.core.inference import classify, detect, run_model, segment
from napari_medvision.core.inference.detection import box_to_index_zyx
from napari_medvision.core.models import load_bundle
from napari_medvision.core.phantom import generate_phantom
from napari_medvision.core.volume import Volume
from tests.bundles import classifier_bundle, detector_bundle, spleen_bundle, threshold_bundle, unet_bundle
from tests.conftest import drain, rotation




def oblique_phantom(seed=3, direction=None):
    case = generate_phantom(seed, shape=(20, 48, 48), spacing=(6.0, 6.0, 10.0), lesion_probability=1.0,
                            direction=rotation(0.2, -0.1, 0.3) if direction is None else direction)
    return case


def dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, -1.0, 1.0]), rotation(0.2, -0.1, 0.3)],
                         ids=["identity", "ras", "oblique"])
def test_segmentation_lands_on_the_source_voxels(tmp_path, direction):
    """A thresholding 'model' must reproduce the threshold in place: no flip, no shift."""
    bundle = load_bundle(threshold_bundle(tmp_path / "thr", threshold_hu=0.0, pixdim=(6.0, 6.0, 10.0)))
    case = oblique_phantom(direction=direction)
    steps, result = drain(segment(bundle, case.image, device="cpu"))
    assert steps and steps[-1].done == steps[-1].total
    assert result.labels.shape == case.image.shape
    assert result.labels.geometry == case.image.geometry
    expected = case.image.array > 0
    assert dice(result.labels.array == 1, expected) > 0.97


def test_segmentation_resampled_and_back_keeps_geometry(tmp_path):
    bundle = load_bundle(threshold_bundle(tmp_path / "thr", threshold_hu=0.0, pixdim=(4.0, 4.0, 6.0)))
    case = oblique_phantom()
    _, result = drain(segment(bundle, case.image, device="cpu"))
    assert result.labels.geometry == case.image.geometry
    assert dice(result.labels.array == 1, case.image.array > 0) > 0.9


def test_segmentation_outputs_names_probabilities_uncertainty_volumes(tmp_path):
    bundle = load_bundle(unet_bundle(tmp_path / "unet"))
    case = oblique_phantom()
    _, result = drain(segment(bundle, case.image, device="cpu", tta=True, keep_probabilities=True,
                              uncertainty=True, overlap=0.5, sw_batch_size=1, min_component_mm3=500))
    assert result.label_names == {1: "liver", 2: "lung"}
    assert result.probabilities.shape == (3, *case.image.shape)
    np.testing.assert_allclose(result.probabilities.sum(axis=0), 1.0, atol=1e-3)
    assert result.uncertainty.geometry == case.image.geometry
    assert 0 <= result.uncertainty.array.min() and result.uncertainty.array.max() <= 1.0 + 1e-5
    assert 0 <= result.case_uncertainty <= 1
    voxel_ml = np.prod(case.image.spacing) / 1000
    assert result.volumes_ml["liver"] == pytest.approx((result.labels.array == 1).sum() * voxel_ml, abs=1e-3)


def test_real_spleen_bundle_config_runs_with_random_weights(shared_data, tmp_path):
    bundle = load_bundle(spleen_bundle(shared_data, tmp_path / "spleen"))
    assert bundle.task == "segmentation" and bundle.labels == {1: "spleen"}
    assert bundle.code_findings() == [], "the parts we use are plain MONAI components"
    case = generate_phantom(1, shape=(24, 64, 64), spacing=(5.0, 5.0, 6.0))
    _, result = drain(segment(bundle, case.image, device="cpu", sw_batch_size=2))
    assert result.labels.geometry == case.image.geometry
    assert set(np.unique(result.labels.array)) <= {0, 1}
    assert not (tmp_path / "spleen" / "eval").exists(), "SaveImaged was dropped"


def test_wrong_channel_count_is_a_clear_error(tmp_path):
    bundle = load_bundle(unet_bundle(tmp_path / "unet2", in_channels=2))
    with pytest.raises(ModelError, match="expects 2 input channel"):
        drain(segment(bundle, oblique_phantom().image, device="cpu"))


def test_3d_model_on_a_2d_image_is_refused(tmp_path):
    bundle = load_bundle(unet_bundle(tmp_path / "unet"))
    xray = Volume(np.zeros((1, 32, 32), np.float32))
    with pytest.raises(ModelError, match="3D model and the image is 2D"):
        drain(segment(bundle, xray, device="cpu"))


def test_cancel_stops_between_windows():
    import threading
    import time

    import torch
    from monai.inferers import SlidingWindowInferer

    from napari_medvision.core.inference.windows import infer

    calls, started = [], threading.Event()

    def slow_network(batch):
        calls.append(1)
        started.set()
        time.sleep(0.05)
        return batch

    inferer = SlidingWindowInferer(roi_size=(8, 8, 8), sw_batch_size=1, overlap=0.0)
    generator = infer(inferer, torch.zeros(1, 1, 32, 32, 32), slow_network, torch.device("cpu"))  # 64 windows
    step = next(generator)
    assert started.wait(30) and step.total == 64
    generator.close()                 # what napari's worker.quit() does at the next yield
    at_close = len(calls)
    time.sleep(0.3)                   # six more windows' time, had it gone on
    assert len(calls) == at_close < 64, "no window runs after the cancel"


def test_classification_probabilities_and_heatmap_on_source_grid(tmp_path):
    bundle = load_bundle(classifier_bundle(tmp_path / "cls"))
    assert bundle.task == "classification"
    case = oblique_phantom()
    _, result = drain(classify(bundle, case.image, device="cpu"))
    assert set(result.probabilities) == {"no lesion", "lesion"}
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert result.prediction == max(result.probabilities, key=result.probabilities.get)
    assert result.heatmap.geometry == case.image.geometry
    assert 0 <= result.heatmap.array.min() and result.heatmap.array.max() <= 1 + 1e-5


def test_detection_boxes_lie_inside_the_image(tmp_path):
    bundle = load_bundle(detector_bundle(tmp_path / "det"))
    assert bundle.task == "detection" and bundle.labels == {0: "nodule"}
    case = generate_phantom(3, shape=(32, 64, 64), spacing=(6.0, 6.0, 8.0))
    _, result = drain(detect(bundle, case.image, device="cpu"))
    assert result.boxes, "a random RetinaNet at threshold 0 still proposes boxes"
    assert all(b.label == "nodule" for b in result.boxes)
    assert [b.score for b in result.boxes] == sorted((b.score for b in result.boxes), reverse=True)
    shape = np.array(case.image.shape)
    for box in result.boxes:
        low, high = box_to_index_zyx(case.image, box.box_world)
        assert np.all(low >= -0.5 - 1e-3) and np.all(high <= shape - 0.5 + 1e-3), box


def test_run_model_dispatches_by_task(tmp_path):
    bundle = load_bundle(classifier_bundle(tmp_path / "cls"))
    _, result = drain(run_model(bundle, oblique_phantom().image, device="cpu", tta=True, explain=False))
    assert result.heatmap is None


def test_unused_cancelled_error_is_medvision_error():
    from napari_medvision.core.errors import MedvisionError

    assert issubclass(CancelledError, MedvisionError)


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_fast_cpu_backends_give_the_same_label_map(tmp_path, monkeypatch, backend):
    pytest.importorskip(backend)
    monkeypatch.setattr("napari_medvision.core.inference.accelerate.CACHE_DIR", tmp_path / "cache")
    bundle = load_bundle(unet_bundle(tmp_path / "unet"))
    case = oblique_phantom()
    _, reference = drain(segment(bundle, case.image, device="cpu"))
    _, fast = drain(segment(bundle, case.image, device="cpu", backend=backend))
    assert f"windows run by {backend}" in fast.notes
    agreement = (fast.labels.array == reference.labels.array).mean()
    assert agreement > 0.999
    assert any((tmp_path / "cache").glob("*.onnx"))


def test_2d_model_runs_slice_by_slice_on_a_3d_volume(tmp_path):
    from tests.bundles import unet2d_bundle

    bundle = load_bundle(unet2d_bundle(tmp_path / "u2d"))
    assert bundle.spatial_dims == 2
    case = oblique_phantom(direction=np.diag([1.0, -1.0, 1.0]))
    steps, result = drain(segment(bundle, case.image, device="cpu", keep_probabilities=True))
    assert result.labels.shape == case.image.shape and result.labels.geometry == case.image.geometry
    assert result.probabilities.shape == (2, *case.image.shape)
    assert any("slice by slice" in note for note in result.notes)
    assert any(step.message.startswith("slice 20/20") for step in steps)


def test_2d_model_on_a_one_slice_xray(tmp_path):
    from tests.bundles import unet2d_bundle

    bundle = load_bundle(unet2d_bundle(tmp_path / "u2d"))
    xray = Volume(np.random.default_rng(0).normal(0, 300, (1, 60, 50)).astype(np.float32), spacing=(0.5, 0.5, 1))
    _, result = drain(segment(bundle, xray, device="cpu"))
    assert result.labels.shape == (1, 60, 50)


def test_preprocessing_failure_is_one_clear_model_error(tmp_path, monkeypatch):
    bundle = load_bundle(threshold_bundle(tmp_path / "thr"))
    import monai.transforms

    def broken(self, data, *args, **kwargs):
        raise ValueError("nibabel is missing")

    monkeypatch.setattr(monai.transforms.Orientationd, "__call__", broken)
    with pytest.raises(ModelError, match="preprocessing failed on this image .*nibabel is missing"):
        drain(segment(bundle, oblique_phantom().image, device="cpu"))


def test_channel_argmax_matches_torch_argmax_ties_included():
    import torch

    from napari_medvision.core.inference.cleanup import channel_argmax

    torch.manual_seed(0)
    logits = torch.randint(0, 3, (3, 7, 6, 5)).float()  # many ties: the first maximum must win
    assert torch.equal(channel_argmax(logits, 0), torch.argmax(logits, dim=0, keepdim=True))
    batch = torch.randn(2, 4, 5, 6, 7)
    assert torch.equal(channel_argmax(batch, 1), torch.argmax(batch, dim=1, keepdim=True))


def test_bundle_postprocessing_split_at_argmax_equals_running_it_whole(tmp_path):
    import torch
    from monai.data import MetaTensor

    from napari_medvision.core.inference.convert import run_preprocessing, to_metatensor
    from napari_medvision.core.inference.segmentation import _run_postprocessing

    bundle = load_bundle(unet_bundle(tmp_path / "unet"))
    model = bundle.build(torch.device("cpu"))
    case = oblique_phantom()

    def fresh():
        data = run_preprocessing(model, {"image": to_metatensor(case.image)}, bundle.name)
        prepared = data["image"]
        torch.manual_seed(1)
        logits = torch.randn(3, *prepared.shape[1:])
        data["pred"] = MetaTensor(logits, meta=prepared.meta, applied_operations=prepared.applied_operations)
        return data

    whole = model.postprocessing(fresh())["pred"]
    split = _run_postprocessing(model.postprocessing, fresh())["pred"]
    assert split.shape == whole.shape == (1, *case.image.shape[::-1])
    assert torch.equal(split.as_tensor(), whole.as_tensor())
    assert torch.allclose(split.affine, whole.affine)


def test_channels_last_cpu_network_gives_the_same_output(tmp_path):
    import torch

    from napari_medvision.core.inference.accelerate import ChannelsLast, channels_last

    model = load_bundle(unet_bundle(tmp_path / "unet")).build(torch.device("cpu"))
    batch = torch.rand(2, 1, 32, 32, 32)
    with torch.no_grad():
        reference = model.network(batch).clone()
        fast = channels_last(model.network)
        assert isinstance(fast, ChannelsLast)
        out = fast(batch)
    assert torch.allclose(out, reference, atol=1e-5)
    conv = next(m for m in model.network.modules() if isinstance(m, torch.nn.Conv3d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    dense = torch.nn.Linear(4, 2)
    assert channels_last(dense) is dense  # nothing to gain without convolutions: left alone


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is a Linux feature")
def test_windows_run_at_a_lower_cpu_priority_than_the_caller():
    import os
    import threading

    import torch
    from monai.inferers import SlidingWindowInferer

    from napari_medvision.core.inference.windows import infer

    def priority():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    seen = []

    def network(batch):
        seen.append(priority())
        return batch * 2

    inferer = SlidingWindowInferer(roi_size=(8, 8, 8), sw_batch_size=2, overlap=0.0)
    _, out = drain(infer(inferer, torch.ones(1, 1, 16, 16, 8), network, torch.device("cpu")))
    assert torch.allclose(out, torch.full_like(out, 2.0))
    caller = priority()
    assert seen and all(p > caller or p == 19 for p in seen)  # the GUI thread keeps its priority


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is a Linux feature")
def test_background_priority_is_lower_inside_and_restored_where_allowed():
    import os
    import threading

    from napari_medvision.core.priority import NICE, background_priority

    seen = {}

    def body():
        tid = threading.get_native_id()
        seen["before"] = os.getpriority(os.PRIO_PROCESS, tid)
        with background_priority():
            seen["inside"] = os.getpriority(os.PRIO_PROCESS, tid)
            with background_priority():  # nested: not lowered twice
                seen["nested"] = os.getpriority(os.PRIO_PROCESS, tid)
        seen["after"] = os.getpriority(os.PRIO_PROCESS, tid)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    main = os.getpriority(os.PRIO_PROCESS, os.getpid())
    assert seen["inside"] == min(main + NICE, 19) == seen["nested"]
    assert seen["after"] in (seen["before"], seen["inside"])  # raising it back needs privileges
