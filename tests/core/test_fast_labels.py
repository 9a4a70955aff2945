"""The label map by argmax on the model's grid (fast path) against the bundle's postprocessing as written,
and ``--backend auto``'s choice (correctness only: timing lives in benchmarks/)."""

import json
import time

import numpy as np
import pytest
import torch
from monai.transforms import (Activationsd, AsDiscreted, Compose, EnsureChannelFirstd, Invertd,
                              KeepLargestConnectedComponentd, Lambdad, Spacingd)

from napari_medvision.cli import build_parser
from napari_medvision.core.inference import backend_choice, fast_labels, segment
from napari_medvision.core.inference import segmentation as segmentation_module
from napari_medvision.core.models import load_bundle
from napari_medvision.core.phantom import generate_phantom
from tests.bundles import CT_PREPROCESSING, SEG_POSTPROCESSING, seg_metadata, unet_bundle, write_bundle
from tests.conftest import drain, rotation


def phantom(seed=2, direction=None):
    direction = np.diag([1.0, -1.0, 1.0]) if direction is None else direction
    return generate_phantom(seed, shape=(24, 56, 60), spacing=(4.0, 4.0, 5.0), direction=direction)


def many_class_bundle(folder, classes=12, nearest=False, pixdim=(7.0, 7.0, 9.0)):
    """A small UNet with ``classes`` outputs and random weights; coarse grid, so nearest and linear differ."""
    pre = [dict(t) for t in CT_PREPROCESSING]
    pre[3] = {**pre[3], "pixdim": list(pixdim)}
    post = [dict(t) for t in SEG_POSTPROCESSING]
    post[1] = {**post[1], "nearest_interp": nearest}
    config = {
        "network_def": {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": classes,
                        "channels": [4, 8], "strides": [2], "num_res_units": 1},
        "preprocessing": {"_target_": "Compose", "transforms": pre},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [16, 16, 16], "sw_batch_size": 2, "overlap": 0.25},
        "postprocessing": {"_target_": "Compose", "transforms": post},
    }
    return write_bundle(folder, config, seg_metadata({k: f"c{k}" for k in range(classes)}))


@pytest.mark.parametrize("route", ["direct", "invertd-then-refine"])
@pytest.mark.parametrize("direction", [None, rotation(0.2, -0.1, 0.3)], ids=["flipped", "oblique"])
def test_fast_labels_agree_with_the_bundles_own_postprocessing(tmp_path, monkeypatch, direction, route):
    """Random weights give a speckled map (almost every voxel on a boundary): the refinement, not luck.

    ``direct`` maps straight from the model's grid (a reorient-and-resample preprocessing); the other
    route, taken for any other preprocessing, inverts by MONAI's Invertd (nearest) then refines."""
    if route != "direct":
        monkeypatch.setattr(fast_labels, "_affine_only", lambda applied: False)
    bundle = load_bundle(many_class_bundle(tmp_path / "b"))
    case = phantom(direction=direction)
    _, exact = drain(segment(bundle, case.image, device="cpu", exact_postprocessing=True))
    _, fast = drain(segment(bundle, case.image, device="cpu"))
    assert fast.labels.geometry == exact.labels.geometry
    assert fast.labels.array.dtype == np.uint8
    assert len(np.unique(exact.labels.array)) > 3  # the comparison means something: several labels
    agreement = (fast.labels.array == exact.labels.array).mean()
    assert agreement >= 0.999
    assert fast.volumes_ml.keys() == exact.volumes_ml.keys()


def test_fast_labels_are_identical_when_the_bundle_inverts_by_nearest_neighbour(tmp_path):
    bundle = load_bundle(many_class_bundle(tmp_path / "b", nearest=True))
    case = phantom(4)
    _, exact = drain(segment(bundle, case.image, device="cpu", exact_postprocessing=True))
    _, fast = drain(segment(bundle, case.image, device="cpu"))
    np.testing.assert_array_equal(fast.labels.array, exact.labels.array)
    assert fast.volumes_ml == exact.volumes_ml


def test_probabilities_when_asked_still_come_on_the_source_grid(tmp_path):
    bundle = load_bundle(unet_bundle(tmp_path / "u"))
    case = phantom()
    _, result = drain(segment(bundle, case.image, device="cpu", keep_probabilities=True, uncertainty=True))
    assert result.probabilities.shape == (3, *case.image.shape)
    np.testing.assert_allclose(result.probabilities.sum(axis=0), 1.0, atol=1e-3)
    assert (result.probabilities.argmax(axis=0) == result.labels.array).mean() >= 0.995


def _pre():
    return Compose([EnsureChannelFirstd("image", channel_dim="no_channel"), Spacingd("image", (2.0, 2.0, 2.0))])


def test_plan_recognises_activation_invert_argmax_and_keeps_what_follows():
    pre = _pre()
    post = Compose([Activationsd("pred", softmax=True), Invertd("pred", pre, "image", nearest_interp=False),
                    AsDiscreted("pred", argmax=True),
                    KeepLargestConnectedComponentd("pred", applied_labels=[1])])
    plan = fast_labels.plan(post, pre)
    assert plan is not None and plan.invert and not plan.exact and plan.activation == "softmax"
    assert isinstance(plan.rest.transforms[0], KeepLargestConnectedComponentd)
    nearest = Compose([Invertd("pred", pre, "image", nearest_interp=True), AsDiscreted("pred", argmax=True)])
    assert fast_labels.plan(nearest, pre).exact
    assert fast_labels.plan(None, pre).invert


@pytest.mark.parametrize("post", [
    lambda pre: Compose([Lambdad("pred", lambda x: x * 2), AsDiscreted("pred", argmax=True)]),
    lambda pre: Compose([Activationsd("pred", softmax=True), AsDiscreted("pred", threshold=0.5)]),
    lambda pre: Compose([Invertd("pred", _pre(), "image"), AsDiscreted("pred", argmax=True)]),  # not the preprocessing
    lambda pre: Compose([Activationsd("pred", sigmoid=True)]),  # no argmax: no label map
    lambda pre: Compose([Invertd(["pred", "label"], pre, "image"), AsDiscreted("pred", argmax=True)]),
], ids=["unknown-step", "threshold", "other-transform", "no-argmax", "two-keys"])
def test_plan_refuses_what_it_cannot_reproduce(post):
    pre = _pre()
    assert fast_labels.plan(post(pre), pre) is None


def test_refinement_is_skipped_when_the_affine_does_not_fit():
    """A nearest-neighbour map that no position of the affine explains: kept as it is, not 'refined'."""
    grid = torch.zeros(4, 4, 4, dtype=torch.uint8)
    grid[2:] = 1
    scores = torch.stack([(grid == 0).float(), (grid == 1).float()])
    labels = torch.full((1, 4, 4, 4), 7.0)  # no model voxel has label 7
    assert fast_labels.refine(labels, grid, scores, torch.eye(4, dtype=torch.float64)) == 0
    assert (labels == 7).all()


@pytest.mark.parametrize("channels, dtype", [(3, torch.uint8), (300, torch.int16)])
def test_argmax_labels_match_torch_argmax_in_pieces(monkeypatch, channels, dtype):
    monkeypatch.setattr(fast_labels, "_PIECE_VOXELS", 50)  # many slabs
    scores = torch.randint(0, 4, (channels, 9, 7, 5)).float()  # many ties: the first channel must win
    labels = fast_labels.argmax_labels(scores)
    assert labels.dtype == dtype and labels.shape == (1, 9, 7, 5)
    torch.testing.assert_close(labels.long(), torch.argmax(scores, dim=0, keepdim=True))


class _Slow(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 2, 1)

    def forward(self, x):
        time.sleep(0.1)
        return self.conv(x)


def _engine_returning(fn):
    class Engine:
        def __call__(self, batch):
            return fn(batch)
    return Engine()


@pytest.fixture
def verdicts(tmp_path, monkeypatch):
    monkeypatch.setattr(backend_choice, "VERDICTS", tmp_path / "backends.json")
    monkeypatch.setattr(backend_choice, "installed_engines", lambda: ["openvino"])
    return tmp_path / "backends.json"


def test_auto_chooses_a_faster_engine_that_gives_torchs_output_and_remembers(verdicts, monkeypatch):
    network = _Slow().eval()
    calls = []

    def accelerated(net, shape, name, key):
        calls.append(name)
        return _engine_returning(lambda batch: net.conv(batch))  # same output, no sleep

    monkeypatch.setattr(backend_choice, "accelerated", accelerated)
    assert backend_choice.choose(network, (2, 1, 4, 4, 4), "k1") == "openvino"
    assert backend_choice.choose(network, (2, 1, 4, 4, 4), "k1") == "openvino"
    assert calls == ["openvino"]  # measured once, then read back
    assert list(json.loads(verdicts.read_text()).values()) == ["openvino"]


def test_auto_refuses_an_engine_whose_output_differs(verdicts, monkeypatch):
    network = _Slow().eval()
    monkeypatch.setattr(backend_choice, "accelerated",
                        lambda net, shape, name, key: _engine_returning(lambda batch: net.conv(batch) + 1.0))
    assert backend_choice.choose(network, (1, 1, 4, 4, 4), "k2") == "torch"


def test_auto_without_engines_is_torch(tmp_path, monkeypatch):
    monkeypatch.setattr(backend_choice, "VERDICTS", tmp_path / "backends.json")
    monkeypatch.setattr(backend_choice, "installed_engines", lambda: [])
    assert backend_choice.choose(_Slow(), (1, 1, 4, 4, 4), "k3") == "torch"
    assert not (tmp_path / "backends.json").exists()


def test_auto_on_a_gpu_runs_the_torch_network_without_measuring(tmp_path, monkeypatch):
    """The CUDA path, checked without a GPU: auto never exports or measures for a GPU model."""
    bundle = load_bundle(unet_bundle(tmp_path / "u"))
    network = torch.nn.Conv3d(1, 3, 1)

    class GpuModel:
        device = torch.device("cuda")

    GpuModel.network = network
    monkeypatch.setattr(backend_choice, "choose", lambda *a: pytest.fail("measured for a GPU model"))
    notes = []
    inferer = segmentation_module._inferer(bundle, bundle.build(torch.device("cpu")).inferer, None, None)
    assert segmentation_module._network_for(bundle, GpuModel(), inferer, "auto", notes) is network
    assert notes == []


def test_auto_with_a_real_engine_picks_a_known_backend(tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setattr("napari_medvision.core.inference.accelerate.CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(backend_choice, "VERDICTS", tmp_path / "backends.json")
    bundle = load_bundle(unet_bundle(tmp_path / "u"))
    _, result = drain(segment(bundle, phantom().image, device="cpu", backend="auto"))
    _, reference = drain(segment(bundle, phantom().image, device="cpu", backend="torch"))
    assert set(json.loads((tmp_path / "backends.json").read_text()).values()) <= {"torch", "openvino", "onnxruntime"}
    assert (result.labels.array == reference.labels.array).mean() > 0.999


def test_cli_defaults_to_auto_backend_and_fast_labels():
    args = build_parser().parse_args(["infer", "--model", "m", "--input", "x.nii.gz"])
    assert args.backend == "auto" and not args.exact_postprocessing
    args = build_parser().parse_args(["infer", "--model", "m", "--input", "x.nii.gz", "--exact-postprocessing"])
    assert args.exact_postprocessing
