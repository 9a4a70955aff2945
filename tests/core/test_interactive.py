"""Prompted segmentation: prompt checks, the model-free engine, the simulated user, ``medvision interact``."""

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from napari_medvision.core.interactive import PromptError, Prompts, prompts_from_itk, segment_prompts
from napari_medvision.core.interactive.random_walk import RandomWalkEngine
from napari_medvision.core.interactive.simulate import clicks_to_reach, next_click
from napari_medvision.core.metrics import dice

#: These tests are of the model-free engine (the shipped model, the default for 3D, has its own file).
RW = RandomWalkEngine.name


def blobs(shape=(24, 48, 48), neck=True, seed=0):
    """Two touching balls of one intensity (joined by a neck) in noise: (image, left ball, right ball)."""
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    left = (z - 12) ** 2 + (y - 24) ** 2 + (x - 14) ** 2 <= 8 ** 2
    right = (z - 12) ** 2 + (y - 24) ** 2 + (x - 34) ** 2 <= 8 ** 2
    bridge = (np.abs(z - 12) <= 2) & (np.abs(y - 24) <= 2) & (x >= 14) & (x <= 34) if neck else False
    rng = np.random.default_rng(seed)
    image = rng.normal(0, 10, shape) + 100 * (left | right | bridge)
    return image.astype(np.float32), left, right & ~left


def test_one_click_segments_a_ball():
    image, left, _ = blobs(neck=False)
    mask = segment_prompts(image, (1, 1, 1), Prompts(positive=[(12, 24, 14)]), RW)
    assert mask.dtype == np.uint8 and mask.shape == image.shape
    assert dice(mask, left) > 0.9


def test_negative_click_cuts_off_a_touching_neighbour():
    image, left, right = blobs()
    prompts = Prompts(positive=[(12, 24, 14)])
    first = segment_prompts(image, (1, 1, 1), prompts, RW)
    assert first[right].mean() > 0.5            # one click leaks into the look-alike neighbour
    second = segment_prompts(image, (1, 1, 1), prompts.add((12, 24, 34), positive=False), RW)
    assert second[right].mean() < 0.1 and dice(second, left) > 0.85


def test_box_keeps_the_mask_inside_it():
    image, left, right = blobs()
    box = [(3, 15, 5), (21, 33, 23)]
    mask = segment_prompts(image, (1, 1, 1), Prompts(positive=[(12, 24, 14)], box=box), RW)
    assert not mask[:, :, 25:].any() and dice(mask, left) > 0.85


def test_clicks_farther_apart_than_the_crop_cap_are_all_in_it():
    """Two + clicks 390 voxels apart on a bar (the walker's crop is capped at 256 voxels per axis
    around the clicks): both lie in the mask, none wraps round; a far - click is left out, not misplaced."""
    rng = np.random.default_rng(0)
    image = rng.normal(0, 10, (20, 40, 400)).astype(np.float32)
    image[5:15, 10:30, :] += 200
    bar = np.zeros(image.shape, bool)
    bar[5:15, 10:30, :] = True
    both = segment_prompts(image, (1, 1, 1), Prompts(positive=[(10, 20, 5), (10, 20, 395)]), RW)
    assert both[10, 20, 5] and both[10, 20, 395] and dice(both, bar) > 0.9
    apart = segment_prompts(image, (1, 1, 1), Prompts(positive=[(10, 20, 5)], negative=[(10, 20, 395)]), RW)
    assert apart[10, 20, 5] and not apart[10, 20, 395] and apart[bar].mean() > 0.5 and not apart[~bar].any()


def test_phantom_organ_improves_over_five_simulated_clicks():
    from napari_medvision.core.interactive.simulate import simulate_session
    from napari_medvision.core.phantom import LABELS, generate_phantom

    case = generate_phantom(0)
    spleen = case.label.array == LABELS["spleen"]
    dices, seconds = simulate_session(RandomWalkEngine(), case.image.array, case.image.spacing, spleen, max_clicks=5)
    assert len(dices) == len(seconds) == 5 and dices[2] > 0.85 and dices[-1] > dices[0]
    # A correction near the border may cost a little, never much of what the earlier clicks got.
    assert all(later > best - 0.03 for best, later in zip(np.maximum.accumulate(dices), dices[1:])), dices


@pytest.mark.parametrize("prompts, message", [
    (Prompts(positive=[(0, 0, 50)]), "outside the image"),
    (Prompts(negative=[(1, 1, 1)]), "only negative clicks"),
    (Prompts(positive=[(2, 2, 2)], box=[(1, 1, 1), (5, 1, 5)]), "zero size along y"),
    (Prompts(positive=[(2, 2, 2)], box=[(1, 1, 1), (5, 9, 50)]), "reaches outside"),
    (Prompts(positive=[(1, 2, 3), (2, 2, 2)], negative=[(2, 2, 2)]), "has both a \\+ and a - click"),
])
def test_bad_prompts_are_refused(prompts, message):
    with pytest.raises(PromptError, match=message):
        prompts.check((10, 10, 10))


def test_itk_order_and_2d_images():
    prompts = prompts_from_itk([(7, 5, 3, True), (1, 2, 0, False)], box_xyz=(0, 1, 2, 8, 9, 4))
    assert prompts.positive.tolist() == [[3, 5, 7]] and prompts.negative.tolist() == [[0, 2, 1]]
    assert prompts.box.tolist() == [[2, 1, 0], [4, 9, 8]]
    with pytest.raises(PromptError, match="image is 2D"):
        prompts_from_itk([(7, 5, 3, True)], dimension=2)
    prompts_from_itk([(7, 5, 0, True)], dimension=2).check((1, 10, 10))


def test_simulated_user_clicks_the_largest_error():
    truth = np.zeros((10, 20, 20), bool)
    truth[2:8, 2:18, 2:18] = True
    prediction = truth.copy()
    prediction[2:8, 2:8, 2:8] = False            # missed: 216 voxels
    prediction[0:2, 0:3, 0:3] = True             # extra: 18 voxels
    index, positive = next_click(prediction, truth, (1, 1, 1))
    assert positive and prediction[index] == 0 and truth[index]
    assert next_click(truth, truth, (1, 1, 1)) is None
    assert clicks_to_reach([0.5, 0.86, 0.95], 0.85) == 2 and clicks_to_reach([0.5], 0.85, 20) == 20


def medvision(*args):
    return subprocess.run([sys.executable, "-m", "napari_medvision.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_cli_interact_keeps_geometry(tmp_path):
    image, left, _ = blobs(neck=False)
    scan = sitk.GetImageFromArray(image.astype(np.int16))
    scan.SetSpacing((0.8, 0.9, 2.5))
    scan.SetOrigin((-12.5, 40.0, 7.25))
    scan.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, 1))
    sitk.WriteImage(scan, str(tmp_path / "scan.nrrd"))
    out = tmp_path / "mask.nii.gz"
    result = medvision("interact", "--input", tmp_path / "scan.nrrd", "--point", "14,24,12,+",
                       "--model", RW, "--output", out, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["voxels"] > 0
    written = sitk.ReadImage(str(out))
    assert written.GetSize() == scan.GetSize() and np.allclose(written.GetSpacing(), scan.GetSpacing(), atol=1e-6)
    assert np.allclose(written.GetOrigin(), scan.GetOrigin(), atol=1e-6)
    assert np.allclose(written.GetDirection(), scan.GetDirection(), atol=1e-6)
    assert set(np.unique(sitk.GetArrayFromImage(written))) == {0, 1}


@pytest.mark.parametrize("extra, message", [
    (["--point", "99,1,1,+"], "outside the image"),
    (["--point", "3,3,3,-"], "only negative clicks"),
    (["--point", "3,3,3,+", "--box", "1,1,1,1,6,6"], "zero size along x"),
    (["--point", "3,3,3"], "X,Y,Z,SIGN"),
    (["--point", "-1,0,0,-"], "outside the image"),               # not taken for an option
    (["--point", "2,2,2,+", "--box", "3,3,3,6,6,6"], "outside the box"),
    ([], "only negative clicks"),                                  # no click and no box
])
def test_cli_interact_bad_input_is_one_line_exit_2(tmp_path, extra, message):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8, 8), np.int16)), str(tmp_path / "scan.mha"))
    result = medvision("interact", "--input", tmp_path / "scan.mha", *extra, "--output", tmp_path / "m.mha")
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and message in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "m.mha").exists()


def test_cli_interact_2d_image_with_3d_click(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8), np.uint8)), str(tmp_path / "xray.png"))
    result = medvision("interact", "--input", tmp_path / "xray.png", "--point", "3,3,2,+", "--output", tmp_path / "m.mha")
    assert result.returncode == 2 and "2D" in result.stderr


def test_cli_interact_2d_clicks_may_leave_z_out_but_3d_ones_may_not(tmp_path):
    yy, xx = np.mgrid[:40, :60]
    disc = (yy - 20) ** 2 + (xx - 30) ** 2 < 81
    sitk.WriteImage(sitk.GetImageFromArray((180 * disc).astype(np.uint8)), str(tmp_path / "xray.png"))
    masks = []
    for point, box in (("30,20,+", "18,8,42,32"), ("30,20,0,+", "18,8,0,42,32,0")):
        out = tmp_path / f"m{len(masks)}.mha"
        result = medvision("interact", "--input", tmp_path / "xray.png", "--point", point, "--point", "2,2,-",
                           "--box", box, "--output", out)
        assert result.returncode == 0, result.stderr
        masks.append(sitk.GetArrayFromImage(sitk.ReadImage(str(out))).astype(bool))
    assert np.array_equal(masks[0], masks[1]) and dice(masks[0], disc) > 0.85
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8, 8), np.int16)), str(tmp_path / "scan.mha"))
    for extra in (["--point", "3,3,+"], ["--box", "1,1,5,5"]):
        result = medvision("interact", "--input", tmp_path / "scan.mha", *extra, "--output", tmp_path / "m.mha")
        assert result.returncode == 2 and "the image is 3D" in result.stderr and len(result.stderr.splitlines()) == 1
        assert not (tmp_path / "m.mha").exists()


def test_cli_interact_a_box_alone_and_an_existing_output_survives_an_error(tmp_path):
    image, left, _ = blobs(neck=False)
    sitk.WriteImage(sitk.GetImageFromArray(image.astype(np.int16)), str(tmp_path / "scan.nrrd"))
    out = tmp_path / "mask.nrrd"
    result = medvision("interact", "--input", tmp_path / "scan.nrrd", "--box", "5,15,3,23,33,21", "--output", out)
    assert result.returncode == 0, result.stderr
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out))).astype(bool)
    assert dice(mask, left) > 0.8
    before = out.read_bytes()
    result = medvision("interact", "--input", tmp_path / "scan.nrrd", "--point", "40,24,12,+",
                       "--box", "5,15,3,23,33,21", "--output", out)
    assert result.returncode == 2 and "outside the box" in result.stderr and out.read_bytes() == before


def test_cli_interact_a_forced_gpu_the_machine_lacks_is_exit_2(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8, 8), np.int16)), str(tmp_path / "scan.mha"))
    result = medvision("interact", "--input", tmp_path / "scan.mha", "--point", "3,3,3,+", "--device", "cuda",
                       "--output", tmp_path / "m.mha")
    assert result.returncode == 2 and "CUDA" in result.stderr and not (tmp_path / "m.mha").exists()


def test_cli_interact_2d_study_gives_a_2d_mask_with_its_geometry_even_when_noise_free(tmp_path):
    """A drawing-like 2D image (one grey disc, no noise: its spread is 0) is segmented, and the mask is
    a 2D image with the study's spacing, origin and direction (not a one-slice volume)."""
    yy, xx = np.mgrid[:50, :80]
    disc = (yy - 15) ** 2 + (xx - 60) ** 2 < 100
    picture = sitk.GetImageFromArray((200 * disc).astype(np.uint8))
    picture.SetSpacing((0.2, 0.3))
    picture.SetOrigin((5.0, 7.0))
    picture.SetDirection((-1.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(picture, str(tmp_path / "xray.mha"))
    result = medvision("interact", "--input", tmp_path / "xray.mha", "--point", "60,15,0,+",
                       "--output", tmp_path / "m.nii.gz", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert "volume_ml" not in record and record["area_cm2"] == pytest.approx(record["voxels"] * 0.06 / 100)
    written = sitk.ReadImage(str(tmp_path / "m.nii.gz"))
    assert written.GetDimension() == 2 and written.GetSize() == (80, 50)
    assert np.allclose(written.GetSpacing(), (0.2, 0.3)) and np.allclose(written.GetOrigin(), (5.0, 7.0))
    assert np.allclose(written.GetDirection(), (-1.0, 0.0, 0.0, 1.0))
    assert dice(sitk.GetArrayFromImage(written).astype(bool), disc) > 0.85
