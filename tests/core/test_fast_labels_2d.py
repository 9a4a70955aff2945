"""The label-map fast path for 2D models (pictures, radiographs, slice-by-slice volumes), and where it
must step aside: a preprocessing that resamples other than linearly (the bundle's own postprocessing then)."""

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Activationsd, AsDiscreted, Compose, EnsureChannelFirstd, Invertd, Resized, Spacingd

from napari_medvision.core.inference import fast_labels, segment
from napari_medvision.core.models import load_bundle
from napari_medvision.core.phantom import generate_phantom
from tests.bundles import unet2d_bundle
from tests.conftest import drain


def test_2d_model_takes_the_fast_path_and_gives_the_bundles_labels(tmp_path, monkeypatch):
    bundle = load_bundle(unet2d_bundle(tmp_path / "u2"))
    case = generate_phantom(6, shape=(3, 70, 64), spacing=(2.5, 2.5, 5.0), direction=np.diag([1.0, -1.0, 1.0]))
    _, reference = drain(segment(bundle, case.image, device="cpu", backend="torch", exact_postprocessing=True))
    calls = []
    real = fast_labels.label_map
    monkeypatch.setattr(fast_labels, "label_map", lambda *a, **k: calls.append(1) or real(*a, **k))
    _, fast = drain(segment(bundle, case.image, device="cpu", backend="torch"))
    assert len(calls) == 3  # one label map per slice, by the fast path
    assert fast.labels.geometry == reference.labels.geometry and fast.labels.shape == case.image.shape
    assert len(np.unique(reference.labels.array)) == 2
    assert (fast.labels.array == reference.labels.array).mean() >= 0.995


def _sample(pre):
    return pre({"image": MetaTensor(torch.rand(45, 38))})["image"].applied_operations


def test_a_refining_plan_fits_linear_resampling_only():
    linear = Compose([EnsureChannelFirstd("image", channel_dim="no_channel"), Spacingd("image", (2.0, 2.0))])
    area = Compose([EnsureChannelFirstd("image", channel_dim="no_channel"), Resized("image", (32, 32))])
    for pre, expected in ((linear, True), (area, False)):
        post = Compose([Activationsd("pred", softmax=True), Invertd("pred", pre, "image", nearest_interp=False),
                        AsDiscreted("pred", argmax=True)])
        plan = fast_labels.plan(post, pre)
        assert plan is not None and not plan.exact
        assert fast_labels.fits(plan, _sample(pre)) is expected
    nearest = Compose([Invertd("pred", area, "image", nearest_interp=True), AsDiscreted("pred", argmax=True)])
    assert fast_labels.fits(fast_labels.plan(nearest, area), _sample(area))  # nearest: exact whatever the mode


def test_axis_at_a_time_interpolation_equals_grid_sample_everywhere():
    """Flipped, scaled and shifted axes, a one-voxel axis, positions past the border (clamped)."""
    from napari_medvision.core.inference import separable

    generator = torch.Generator().manual_seed(4)
    scores = torch.rand(3, 9, 1, 11, generator=generator)
    to_grid = torch.tensor([[-0.37, 0, 0, 8.4], [0, 0.5, 0, -0.2], [0, 0, 0.61, -0.7], [0, 0, 0, 1]],
                           dtype=torch.float64)
    shape = (25, 3, 21)
    assert separable.axis_aligned(to_grid) and not separable.axis_aligned(to_grid[[1, 0, 2, 3]])
    fast = separable.label_map(scores, to_grid, shape, torch.uint8)
    index = torch.stack([g.reshape(-1) for g in torch.meshgrid(
        *[torch.arange(n, dtype=torch.float64) for n in shape], indexing="ij")])
    position = to_grid[:-1, :-1] @ index + to_grid[:-1, -1:]
    position = torch.minimum(position.clamp_min(0), torch.tensor(scores.shape[1:], dtype=torch.float64)[:, None] - 1)
    reference = fast_labels._interpolated_argmax(scores, position).reshape(1, *shape)
    assert len(torch.unique(reference)) == 3
    assert (fast.long() == reference).float().mean() >= 0.999
