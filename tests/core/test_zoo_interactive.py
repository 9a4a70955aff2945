"""Interactive Model Zoo bundles (DeepEdit, VISTA3D) run in their own format behind the engine interface.

The bundles are built here (tests/zoo_bundles.py): the zoo's config keys and transforms, tiny networks.
Checked: the style is told from the config, the trust gate holds, the clicks reach the network at
the right voxel of its input grid (after the bundle's reorientation and resizing), and the mask comes
back on the source grid with the source's exact geometry.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from napari_medvision.core.errors import UntrustedCodeError
from napari_medvision.core.inference.convert import ras_affine, to_metatensor
from napari_medvision.core.interactive import Prompts
from napari_medvision.core.interactive.zoo import bundle_style, zoo_engine
from napari_medvision.core.models import find_model
from napari_medvision.core.volume import Volume
from tests.bundles import threshold_bundle
from tests.core.test_interactive import medvision
from tests.zoo_bundles import deepedit_bundle, vista3d_bundle

SHAPE = (18, 26, 30)  # (z, y, x): not cubic, so the resize to the network's grid differs per axis


def scan(seed: int = 0) -> Volume:
    """A CT-like volume with a flipped y axis, anisotropic voxels and an offset origin."""
    values = np.random.default_rng(seed).normal(40, 20, SHAPE).astype(np.float32)
    return Volume(values, spacing=(0.9, 1.1, 2.5), origin=(-20.0, 35.5, 7.25), direction=np.diag([1.0, -1.0, 1.0]))


def test_style_is_read_from_the_config(tmp_path):
    assert bundle_style(find_model(deepedit_bundle(tmp_path / "de"))) == "deepedit"
    assert bundle_style(find_model(vista3d_bundle(tmp_path / "vista"))) == "vista3d"
    assert bundle_style(find_model(threshold_bundle(tmp_path / "plain"))) is None


def test_untrusted_deepedit_bundle_is_refused(tmp_path):
    engine = zoo_engine(deepedit_bundle(tmp_path / "de"), device="cpu")
    with pytest.raises(UntrustedCodeError, match="scripts"):
        engine.segment_volume(scan(), Prompts([(9, 13, 15)]))


def test_clicks_become_guidance_at_their_voxel_in_the_network_grid(tmp_path):
    engine = zoo_engine(deepedit_bundle(tmp_path / "de"), trusted=True, device="cpu")
    volume = scan()
    positive, negative = (4, 20, 6), (14, 5, 25)
    seen = []
    model = engine.loaded()
    hook = model.network.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    try:
        mask = engine.segment_volume(volume, Prompts([positive], [negative]))
    finally:
        hook.remove()
    assert mask.shape == SHAPE and mask.dtype == np.uint8
    (batch,) = seen
    assert tuple(batch.shape) == (1, 3, 32, 32, 32)
    grid = _network_grid_affine(model, volume)
    for channel, click in ((1, positive), (2, negative)):
        peak = np.unravel_index(int(torch.argmax(batch[0, channel])), (32, 32, 32))
        assert np.abs(np.asarray(peak) - _in_grid(grid, volume, click)).max() <= 1.5
        assert float(batch[0, channel].max()) == pytest.approx(1.0)


def _network_grid_affine(model, volume, extra=None, transform=None) -> np.ndarray:
    """Voxel -> RAS affine of the image after the bundle's own preprocessing (no clicks)."""
    extra = {"organ": [], "background": []} if extra is None else extra
    data = (transform or model.preprocessing)({"image": to_metatensor(volume), **extra})
    return np.asarray(data["image"].affine, float)


def _in_grid(affine, volume, index_zyx) -> np.ndarray:
    """Where voxel ``index_zyx`` of ``volume`` lies in the network grid, via SimpleITK's world position."""
    image = volume.to_sitk()
    lps = np.asarray(image.TransformIndexToPhysicalPoint(tuple(int(v) for v in index_zyx[::-1])))
    ras = np.append(lps * [-1, -1, 1], 1.0)
    return (np.linalg.inv(affine) @ ras)[:3]


def test_cli_mask_from_a_deepedit_bundle_keeps_geometry(tmp_path):
    bundle = deepedit_bundle(tmp_path / "probe", probe=True)
    volume = scan(1)
    path = tmp_path / "scan.nrrd"
    sitk.WriteImage(volume.to_sitk(), str(path))
    out = tmp_path / "mask.nii.gz"
    result = medvision("interact", "--input", path, "--point", "15,20,4,+", "--point", "3,3,15,-", "--model", bundle,
                       "--trust", "--device", "cpu", "--output", out, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["engine"] == "probe"
    written, source = sitk.ReadImage(str(out)), sitk.ReadImage(str(path))
    for what in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert np.allclose(getattr(written, what)(), getattr(source, what)(), atol=1e-6), what
    mask = sitk.GetArrayFromImage(written)
    assert mask[4, 20, 15] == 1 and mask[15, 3, 3] == 0
    # the probe's mask is the guidance blob: centred on the positive click, within a voxel or two
    assert np.abs(np.argwhere(mask).mean(0) - (4, 20, 15)).max() <= 2.0


def test_cli_refuses_an_untrusted_zoo_bundle_and_a_plain_model(tmp_path):
    path = tmp_path / "scan.nrrd"
    sitk.WriteImage(scan().to_sitk(), str(path))
    common = ("interact", "--input", path, "--point", "15,20,4,+", "--output", tmp_path / "m.nii.gz")
    refused = medvision(*common, "--model", deepedit_bundle(tmp_path / "de"))
    assert refused.returncode == 2 and refused.stderr.startswith("error:") and "--trust" in refused.stderr
    plain = medvision(*common, "--model", threshold_bundle(tmp_path / "plain"))
    assert plain.returncode == 2 and "not an interactive one" in plain.stderr
    wrong = medvision(*common, "--model", deepedit_bundle(tmp_path / "de2"), "--trust", "--label", "liver")
    assert wrong.returncode == 2 and "has no label 'liver'; it has organ, background" in wrong.stderr
    unknown = medvision(*common, "--model", "no_such_engine")
    assert unknown.returncode == 2 and "no interactive engine or model called 'no_such_engine'" in unknown.stderr
    assert not (tmp_path / "m.nii.gz").exists()


def test_box_clips_the_mask_and_alone_gives_a_centre_click(tmp_path):
    engine = zoo_engine(deepedit_bundle(tmp_path / "probe", probe=True), trusted=True, device="cpu")
    box = np.array([(2, 8, 10), (8, 16, 20)])
    mask = engine.segment_volume(scan(), Prompts(box=box))
    assert mask.any() and mask[5, 12, 15] == 1
    outside = np.ones(SHAPE, bool)
    outside[2:9, 8:17, 10:21] = False
    assert not mask[outside].any()


def test_ras_affine_of_the_probe_volume_is_the_one_monai_reads():
    """Guard for the expectation above: our in-memory image carries SimpleITK's own geometry."""
    volume = scan()
    affine = ras_affine(volume)
    lps = np.asarray(volume.to_sitk().TransformIndexToPhysicalPoint((3, 5, 7)))
    assert np.allclose((affine @ [3, 5, 7, 1])[:3], lps * [-1, -1, 1])


def test_vista3d_points_reach_the_network_in_its_grid(tmp_path):
    engine = zoo_engine(vista3d_bundle(tmp_path / "vista"), trusted=True, device="cpu")
    volume = scan()
    positive, negative = (4, 20, 6), (14, 5, 25)
    model = engine.loaded()
    seen = []
    hook = model.network.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs), with_kwargs=True)
    try:
        mask = engine.segment_volume(volume, Prompts([positive], [negative]))
    finally:
        hook.remove()
    assert mask.shape == SHAPE and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    kwargs = seen[0]
    assert kwargs["point_labels"].tolist() == [[1, 0]]
    grid = _network_grid_affine(model, volume, {"points": [], "point_labels": [], "label_prompt": None},
                                transform=_inverted(model))
    expected = np.stack([_in_grid(grid, volume, c) for c in (positive, negative)])
    assert np.abs(kwargs["point_coords"][0].numpy() - expected).max() <= 0.51


def test_vista3d_mask_comes_back_on_the_source_grid_around_the_point(tmp_path):
    """A stand-in network (logits > 0 within 3 voxels of the positive point) shows the way back."""
    engine = zoo_engine(vista3d_bundle(tmp_path / "vista"), trusted=True, device="cpu")
    model = engine.loaded()
    real = model.network
    model.network = _BallAroundPoint()
    try:
        mask = engine.segment_volume(scan(), Prompts([(9, 13, 15)]))
    finally:
        model.network = real
    assert mask[9, 13, 15] == 1
    assert np.abs(np.argwhere(mask).mean(0) - (9, 13, 15)).max() <= 1.0
    extent_mm = (np.ptp(np.argwhere(mask), axis=0) + 1) * np.array(scan().spacing[::-1])
    assert np.all(extent_mm <= 2 * 3 * 1.5 + 2 * 2.5)  # a ball of 3 network voxels (1.5 mm), one voxel's slack


class _BallAroundPoint(torch.nn.Module):
    def forward(self, image, point_coords=None, patch_coords=None, **kwargs):
        window = patch_coords[0]
        grids = torch.meshgrid(*[torch.arange(s.start, s.stop, dtype=torch.float32) for s in window[2:]],
                               indexing="ij")
        point = point_coords[0, 0]
        inside = sum((g - p) ** 2 for g, p in zip(grids, point)) <= 9
        return torch.where(inside, 1.0, -1.0)[None, None]


def _inverted(model):
    from napari_medvision.core.interactive.deepedit import inverted_preprocessing

    return inverted_preprocessing(model)
