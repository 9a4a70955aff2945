"""Resampling in float32 (issue 16, goal 4): the bundle's transforms set for one run and put back, and
labels still equal to the torch reference (the bundle's pre- and postprocessing as written)."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, Spacing, Spacingd

from napari_medvision.core.inference import segment
from napari_medvision.core.inference.precision import float32_resampling
from napari_medvision.core.models import load_bundle
from napari_medvision.core.models.cache import loaded_model
from napari_medvision.core.phantom import generate_phantom
from tests.bundles import unet_bundle
from tests.conftest import drain


def _sample():
    affine = torch.diag(torch.tensor([1.3, 1.1, 0.9, 1.0], dtype=torch.float64))
    return {"image": MetaTensor(torch.rand(20, 21, 22, generator=torch.Generator().manual_seed(0)), affine=affine)}


def _pipeline():
    """A Spacingd left at MONAI's default (float64), one set to float32, a nested one, an array Spacing."""
    return Compose([EnsureChannelFirstd("image", channel_dim="no_channel"),
                    Spacingd("image", (2.0, 2.0, 2.0)),
                    Spacingd("image", (2.0, 2.0, 2.0), dtype=np.float32),
                    Compose([Spacingd("image", (2.5, 2.5, 2.5))])])


def test_float64_resampling_runs_in_float32_inside_the_block_and_is_put_back():
    pre = _pipeline()
    spacing = Spacing((2.0, 2.0, 2.0))
    with float32_resampling(pre) as changed, float32_resampling(spacing) as changed_array:
        assert changed == 2 and changed_array == 1
        assert pre.transforms[1].dtype == (np.float32,) and pre.transforms[3].transforms[0].dtype == (np.float32,)
        assert spacing.sp_resample.dtype == np.float32
        low = pre(_sample())["image"]
    assert pre.transforms[1].dtype == (np.float64,) and pre.transforms[3].transforms[0].dtype == (np.float64,)
    assert pre.transforms[2].dtype == (np.float32,)
    assert spacing.sp_resample.dtype == np.float64
    full = pre(_sample())["image"]
    # what ran is what MONAI records (and what Invertd reads back)
    assert [op["extra_info"]["dtype"] for op in low.applied_operations] == ["float32"] * 3
    assert [op["extra_info"]["dtype"] for op in full.applied_operations] == ["float64", "float32", "float64"]
    assert low.dtype == full.dtype == torch.float32
    torch.testing.assert_close(low.as_tensor(), full.as_tensor(), atol=1e-5, rtol=0)


def test_disabled_or_nothing_to_change_leaves_the_preprocessing_as_written():
    pre = _pipeline()
    with float32_resampling(pre, enabled=False) as changed:
        assert changed == 0 and pre.transforms[1].dtype == (np.float64,)
    with float32_resampling(None) as changed:
        assert changed == 0


def test_put_back_even_when_the_preprocessing_fails():
    pre = _pipeline()
    with pytest.raises(RuntimeError), float32_resampling(pre):
        pre({"image": "not an image"})
    assert pre.transforms[1].dtype == (np.float64,)


@pytest.mark.parametrize("seed", [3, 5])
def test_labels_equal_the_torch_reference_as_written(tmp_path, seed):
    """Default run (float32 resampling, labels on the model grid) against the bundle's pre- and
    postprocessing exactly as written (float64, every class resampled), torch backend both."""
    bundle = load_bundle(unet_bundle(tmp_path / "u"))
    case = generate_phantom(seed, shape=(24, 56, 60), spacing=(4.0, 4.0, 5.0), direction=np.diag([1.0, -1.0, 1.0]))
    _, reference = drain(segment(bundle, case.image, device="cpu", backend="torch", exact_postprocessing=True))
    _, fast = drain(segment(bundle, case.image, device="cpu", backend="torch"))
    assert fast.labels.geometry == reference.labels.geometry
    assert len(np.unique(reference.labels.array)) == 3  # random weights: all three labels, many boundaries
    assert (fast.labels.array == reference.labels.array).mean() >= 0.995
    # the bundle's own transform is as written again after the run
    cached = loaded_model(bundle, torch.device("cpu"))  # the model both runs used
    spacing = next(t for t in cached.preprocessing.flatten().transforms if isinstance(t, Spacingd))
    assert spacing.dtype == (np.float64,)
