"""Per-run settings travel with the call: a cached, built model is the same after any run.

In one napari session a run with overlap 0.9 followed by a run with the defaults must give the
defaults' result, and two runs of one cached model at once (a batch and a GUI run) must each get
their own settings' result.
"""

import threading

import numpy as np
import pytest
import torch
from monai.inferers import SlidingWindowInferer

from napari_medvision.core.inference import classify, detect, detection, segment, segmentation
from napari_medvision.core.inference.windows import infer
from napari_medvision.core.models import load_bundle
from napari_medvision.core.models.cache import clear, loaded_model
from napari_medvision.core.phantom import generate_phantom
from tests.bundles import classifier_bundle, detector_bundle, unet_bundle
from tests.conftest import drain

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def empty_cache():
    clear()
    yield
    clear()


@pytest.fixture(scope="module")
def case():
    return generate_phantom(3, shape=(20, 48, 48), spacing=(6.0, 6.0, 10.0), lesion_probability=1.0)


def probabilities(bundle, case, **settings) -> np.ndarray:
    return drain(segment(bundle, case.image, device="cpu", keep_probabilities=True, **settings))[1].probabilities


def boxes(bundle, case, **settings) -> list[dict]:
    return [b.to_dict() for b in drain(detect(bundle, case.image, device="cpu", **settings))[1].boxes]


def fresh(function, *args, **settings):
    """``function`` on a model built anew, as in a fresh process."""
    clear()
    return function(*args, **settings)


def two_at_once(module, monkeypatch, calls):
    """Run ``calls`` in two threads on one cached model, both past their set-up before either computes.

    Both threads wait for each other in their preprocessing, which the engines reach after they have
    prepared their settings: a setting written into the shared model would then reach the other run.
    """
    from napari_medvision.core.inference import channels

    barrier = threading.Barrier(len(calls), timeout=120)
    module = channels   # every engine ('module') preprocesses through channels.prepare_input
    original = module.run_preprocessing

    def meet(*args, **kwargs):
        barrier.wait()
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "run_preprocessing", meet)
    results, errors = [None] * len(calls), []

    def run(index, call):
        try:
            results[index] = call()
        except BaseException as exc:  # reported below, with the thread's own traceback
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monkeypatch.setattr(module, "run_preprocessing", original)
    if errors:
        raise errors[0]
    return results


def test_overlap_of_one_run_does_not_stay_for_the_next(tmp_path, case):
    bundle = load_bundle(unet_bundle(tmp_path / "unet"))
    default = fresh(probabilities, bundle, case)
    dense = fresh(probabilities, bundle, case, overlap=0.9, sw_batch_size=1)
    assert not np.array_equal(dense, default)  # the setting matters, so a leak would show

    clear()
    probabilities(bundle, case, overlap=0.9, sw_batch_size=1)
    after = probabilities(bundle, case)   # same cached model, defaults again
    np.testing.assert_array_equal(after, default)
    inferer = loaded_model(bundle, CPU).inferer
    assert (inferer.overlap, inferer.sw_batch_size, inferer.sw_device, inferer.device) == (0.25, 2, None, None)


def test_two_runs_at_once_each_get_their_own_overlap(tmp_path, case, monkeypatch):
    bundle = load_bundle(unet_bundle(tmp_path / "unet"))
    expected = [fresh(probabilities, bundle, case, overlap=0.9), fresh(probabilities, bundle, case, overlap=0.5)]
    assert not np.array_equal(*expected)
    clear()
    loaded_model(bundle, CPU)   # one cached model for both threads
    got = two_at_once(segmentation, monkeypatch, [lambda: probabilities(bundle, case, overlap=0.9),
                                                  lambda: probabilities(bundle, case, overlap=0.5)])
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


def test_thresholds_of_one_detection_do_not_stay_for_the_next(tmp_path, case):
    bundle = load_bundle(detector_bundle(tmp_path / "det"))   # its own defaults: score 0.0, MONAI's NMS
    default = fresh(boxes, bundle, case)
    strict = fresh(boxes, bundle, case, nms_iou=0.01, score_threshold=0.03)
    assert 0 < len(strict) < len(default)

    clear()
    boxes(bundle, case, nms_iou=0.01, score_threshold=0.03)
    assert boxes(bundle, case) == default
    selector = loaded_model(bundle, CPU).detector.box_selector
    assert (selector.score_thresh, selector.nms_thresh) == (0.05, 0.5)   # RetinaNetDetector's own, as built


def test_two_detections_at_once_each_get_their_own_thresholds(tmp_path, case, monkeypatch):
    bundle = load_bundle(detector_bundle(tmp_path / "det"))
    expected = [fresh(boxes, bundle, case, nms_iou=0.01, score_threshold=0.03), fresh(boxes, bundle, case)]
    assert expected[0] != expected[1]
    clear()
    loaded_model(bundle, CPU)
    got = two_at_once(detection, monkeypatch, [lambda: boxes(bundle, case, nms_iou=0.01, score_threshold=0.03),
                                               lambda: boxes(bundle, case)])
    assert got == expected


def test_detection_reports_the_threshold_it_kept_boxes_at(tmp_path, case):
    bundle = load_bundle(detector_bundle(tmp_path / "det"))
    _, result = drain(detect(bundle, case.image, device="cpu", score_threshold=0.03))
    assert result.score_threshold == 0.03 and result.boxes
    assert min(b.score for b in result.boxes) > 0.03
    assert drain(detect(bundle, case.image, device="cpu"))[1].score_threshold == 0.0   # the bundle's key


def test_grad_cam_leaves_no_hooks_or_gradients_on_the_cached_network(tmp_path, case):
    bundle = load_bundle(classifier_bundle(tmp_path / "cls"))
    first = drain(classify(bundle, case.image, device="cpu", explain=True))[1]
    second = drain(classify(bundle, case.image, device="cpu", explain=True))[1]
    network = loaded_model(bundle, CPU).network
    assert first.heatmap is not None
    np.testing.assert_array_equal(first.heatmap.array, second.heatmap.array)
    assert not any(m._forward_hooks or m._backward_hooks for m in network.modules())
    assert all(p.grad is None for p in network.parameters())


def test_infer_leaves_the_inferer_as_it_was():
    inferer = SlidingWindowInferer(roi_size=(8, 8, 8), sw_batch_size=2, overlap=0.25)
    before = dict(vars(inferer))
    _, out = drain(infer(inferer, torch.ones(1, 1, 16, 16, 8), lambda batch: batch * 2, CPU))
    assert torch.equal(out, torch.full_like(out, 2.0))
    assert vars(inferer) == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the out-of-memory fallback runs on a CUDA GPU only")
def test_gpu_out_of_memory_fallback_changes_neither_inferer_nor_network():
    cuda = torch.device("cuda")
    inferer = SlidingWindowInferer(roi_size=(8, 8, 8), sw_batch_size=2, overlap=0.25)
    before = dict(vars(inferer))

    class OutOfMemoryOnTheGpu(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv3d(1, 1, 1)

        def forward(self, batch):
            if batch.is_cuda:
                raise torch.cuda.OutOfMemoryError("out of memory (test)")
            return self.conv(batch)

    gpu_network = OutOfMemoryOnTheGpu().to(cuda)
    cpu_network = OutOfMemoryOnTheGpu()
    cpu_network.load_state_dict(gpu_network.state_dict())
    inputs = torch.rand(1, 1, 16, 16, 8)
    steps, out = drain(infer(inferer, inputs.to(cuda), gpu_network, cuda, cpu_network=lambda: cpu_network))
    assert any("running on the CPU" in s.message for s in steps)
    with torch.no_grad():
        torch.testing.assert_close(out, cpu_network(inputs))
    assert vars(inferer) == before
    assert next(gpu_network.parameters()).is_cuda   # the cached GPU network stays on the GPU
