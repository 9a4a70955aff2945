"""The shipped interactive model as an engine: cube geometry, guidance, engine choice, masks, bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from napari_medvision.core.errors import MedvisionError, ModelError
from napari_medvision.core.interactive import PromptError, Prompts, available_engines, choose_engine, segment_prompts
from napari_medvision.core.interactive.base import fill_holes
from napari_medvision.core.interactive.click_unet import ClickUNetEngine, sample_bundle_path
from napari_medvision.core.interactive.cube import cube_around, guidance, paste, sample
from napari_medvision.core.metrics import dice

NAME = "interactive_unet"


def ball(shape=(20, 64, 64), spacing_zyx=(3.0, 0.8, 0.8), centre_mm=(30.0, 26.0, 24.0), radius_mm=9.0):
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing_zyx)], indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grids, centre_mm)) <= radius_mm ** 2


def test_cube_sample_and_paste_return_a_structure_to_its_own_grid():
    spacing_zyx = (3.0, 0.8, 0.8)
    truth = ball(spacing_zyx=spacing_zyx)
    where = np.argwhere(truth)
    cube = cube_around(where.min(0), where.max(0), spacing_zyx)
    inside = sample(truth.astype(np.float32), cube, spacing_zyx)
    assert inside.shape == (48, 48, 48) and 0.02 < (inside > 0.5).mean() < 0.5
    box, back = paste(inside, cube, truth.shape, spacing_zyx)
    full = np.zeros(truth.shape, bool)
    full[box] = back > 0.5
    assert dice(full, truth) > 0.9


def test_guidance_is_the_deepedit_signal():
    from monai.apps.deepedit.transforms import AddGuidanceSignalDeepEditd

    points = [[10, 20, 30], [30, 5, 12]]
    ours = guidance(points, size=48, sigma=2.0)
    theirs = AddGuidanceSignalDeepEditd(keys="image", sigma=2)({
        "image": np.zeros((1, 48, 48, 48), np.float32), "guidance": {"structure": points},
        "label_names": {"structure": 1}})["image"][1]
    assert ours.max() == 1.0 and np.abs(ours - np.asarray(theirs)).max() < 0.05
    assert not guidance(np.zeros((0, 3)), size=8).any() and not guidance([[-1, 2, 2]], size=8).any()


def test_the_model_is_listed_for_3d_and_refuses_2d():
    assert list(available_engines())[:2] == ["random-walker", NAME]
    assert choose_engine(np.zeros((8, 16, 16)), (1, 1, 1), NAME).name == NAME
    assert choose_engine(np.zeros((1, 16, 16)), (1, 1, 1)).name == "random-walker"
    with pytest.raises(MedvisionError, match="does not fit"):
        choose_engine(np.zeros((1, 16, 16)), (1, 1, 1), NAME)


def test_an_unseen_phantom_organ_from_a_few_clicks():
    """The spleen was never a training target; phantom seed 5 was never a training scan."""
    from napari_medvision.core.interactive.simulate import simulate_session
    from napari_medvision.core.phantom import LABELS, generate_phantom

    case = generate_phantom(5, modality="MR")
    spleen = case.label.array == LABELS["spleen"]
    dices, _ = simulate_session(ClickUNetEngine(), case.image.array, case.image.spacing, spleen, max_clicks=3)
    assert max(dices) > 0.75, dices


def test_a_bright_ball_in_noise_and_the_box_bounds_the_mask():
    rng = np.random.default_rng(0)
    spacing_zyx = (3.0, 0.8, 0.8)
    truth = ball(spacing_zyx=spacing_zyx)
    image = (rng.normal(0, 10, truth.shape) + 60 * truth).astype(np.float32)
    centre = tuple(int(v) for v in np.argwhere(truth).mean(0))
    mask = segment_prompts(image, spacing_zyx[::-1], Prompts(positive=[centre]), NAME)
    assert mask.dtype == np.uint8 and mask.shape == image.shape and dice(mask, truth) > 0.7
    box = [(0, 0, 0), (19, 63, centre[2])]
    boxed = segment_prompts(image, spacing_zyx[::-1], Prompts(positive=[centre], box=box), NAME)
    assert boxed.any() and not boxed[:, :, centre[2] + 1:].any()


@pytest.mark.parametrize("prompts, message", [
    (Prompts(positive=[(0, 0, 50)]), "outside the image"),
    (Prompts(negative=[(1, 1, 1)]), "only negative clicks"),
    (Prompts(positive=[(2, 2, 2)], box=[(1, 1, 1), (5, 1, 5)]), "zero size along y"),
])
def test_bad_prompts_are_refused_before_the_model_runs(prompts, message):
    with pytest.raises(PromptError, match=message):
        segment_prompts(np.zeros((10, 10, 10), np.float32), (1, 1, 1), prompts, NAME)


def test_a_missing_model_does_not_fit_and_says_how_to_get_one(tmp_path):
    engine = ClickUNetEngine(tmp_path / "nothing")
    assert not engine.fits(np.zeros((8, 8, 8)), (1, 1, 1))
    with pytest.raises(ModelError, match="medvision train interactive_unet"):
        engine.network()


def test_the_shipped_bundle_is_small_and_loads_weights_only():
    weights = sample_bundle_path() / "models" / "model.pt"
    assert weights.stat().st_size < 5 * 1024 * 1024
    metadata = json.loads((sample_bundle_path() / "configs" / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["medvision"]["task"] == "interactive"
    assert ClickUNetEngine().network().training is False


def test_cli_interact_with_the_model_keeps_geometry(tmp_path):
    rng = np.random.default_rng(1)
    truth = ball()
    scan = sitk.GetImageFromArray((rng.normal(100, 8, truth.shape) + 50 * truth).astype(np.int16))
    scan.SetSpacing((0.8, 0.8, 3.0))
    scan.SetOrigin((-12.5, 40.0, 7.25))
    scan.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, 1))
    sitk.WriteImage(scan, str(tmp_path / "scan.nrrd"))
    z, y, x = (int(v) for v in np.argwhere(truth).mean(0))
    out = tmp_path / "mask.nii.gz"
    result = subprocess.run([sys.executable, "-m", "napari_medvision.cli", "interact", "--input",
                             str(tmp_path / "scan.nrrd"), "--point", f"{x},{y},{z},+", "--model", NAME,
                             "--output", str(out), "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["engine"] == NAME
    written = sitk.ReadImage(str(out))
    assert written.GetSize() == scan.GetSize() and np.allclose(written.GetOrigin(), scan.GetOrigin(), atol=1e-6)
    assert np.allclose(written.GetDirection(), scan.GetDirection(), atol=1e-6)
    assert dice(sitk.GetArrayFromImage(written), truth) > 0.7


def test_finetune_drives_the_interactive_model_with_simulated_clicks(tmp_path, monkeypatch):
    """``medvision finetune``'s core on the interactive bundle: a new version that the engine loads."""
    from napari_medvision.core.models import find_bundle
    from napari_medvision.core.phantom import LABELS, generate_phantom
    from napari_medvision.core.training.case_store import CaseStore
    from napari_medvision.core.training.finetune import FinetuneSettings, finetune
    from napari_medvision.core.training.versions import VersionStore
    from tests.conftest import drain

    from napari_medvision.core.interactive import finetune as interactive_finetune

    monkeypatch.setattr(interactive_finetune, "VALIDATION_EXAMPLES", 1)
    store = CaseStore.create(tmp_path / "store", {"background": 0, "spleen": 1}, channel="MR")
    for seed in (7, 8):
        case = generate_phantom(seed, shape=(32, 64, 64), spacing=(5.6, 5.6, 10.0), modality="MR")
        store.add_case(f"case_{seed}", case.image,
                       case.label.with_array((case.label.array == LABELS["spleen"]).astype("uint8")))
    settings = FinetuneSettings(epochs=1, steps_per_epoch=2, batch_size=1, max_minutes=2)
    steps, result = drain(finetune(find_bundle(NAME), store, VersionStore(tmp_path / "versions"), settings,
                                   device="cpu", output=tmp_path / "new"))
    assert result.training_cases == ["case_7"] and result.validation_cases == ["case_8"]
    assert 0.0 <= result.base_dice <= 1.0 and len(result.history) == 1
    assert json.loads((tmp_path / "new" / "docs" / "version.json").read_text())["validation"].startswith("Dice")
    engine = ClickUNetEngine(tmp_path / "new")
    assert engine.fits(case.image.array, case.image.spacing) and engine.network() is not None


def test_the_engine_is_built_on_the_device_asked_for():
    import torch

    from napari_medvision.core.errors import ModelError
    from napari_medvision.core.interactive.engine import available_engines

    assert next(ClickUNetEngine(device="cpu").network().parameters()).device.type == "cpu"
    assert available_engines("cpu")[NAME] is not available_engines("auto")[NAME]   # one per device
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: forcing cuda would build there")
    with pytest.raises(ModelError, match="CUDA"):
        ClickUNetEngine(device="cuda").network()


def test_confident_logits_give_a_mask_without_overflow_warnings():
    """A well-trained network gives logits far past +-100 (exp overflowed and warned)."""
    import warnings

    import torch

    from napari_medvision.core.interactive.cube import Cube

    class Confident(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(1000.0))

        def forward(self, x):
            return self.scale * (x[:, 2:3] - 0.5)   # +1000 at the positive click, -500 elsewhere

    engine = ClickUNetEngine()
    engine._network = Confident().eval()
    image = np.zeros((16, 32, 32), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        box, values = engine.predict(image, np.array([2.0, 1.0, 1.0]), Cube((8.0, 16.0, 16.0), 24.0),
                                     np.array([[8, 16, 16]]), np.zeros((0, 3), int))
    assert values.max() > 0.99 and values.min() < 0.01 and values[8 - box[0].start, 16 - box[1].start, 16 - box[2].start] > 0.5


def _finish_on_the_whole_scan(full, positive, prompts):
    """What the mask's finishing must equal: clicks, box, holes and pieces on the whole scan."""
    from scipy import ndimage

    full = full.copy()
    full[tuple(np.asarray(prompts.negative, int).reshape(-1, 3).T)] = False
    full[tuple(positive.T)] = True
    if prompts.box is not None:
        inside = np.zeros(full.shape, bool)
        inside[tuple(slice(a, b + 1) for a, b in zip(*prompts.box))] = True
        full &= inside
    labels, _ = ndimage.label(fill_holes(full, prompts.negative))
    return np.isin(labels, list({int(labels[tuple(p)]) for p in positive} - {0}))


def test_a_negative_click_in_a_hole_of_the_answer_keeps_that_hole_open():
    """Holes in the network's answer are filled, but not one that holds a negative click (filling it
    again undid the click: a vessel or a fatty core the user clicked out came back every time)."""
    from napari_medvision.core.interactive.click_unet import _finish

    shape = (12, 20, 20)
    z, y, x = np.indices(shape)
    distance = np.sqrt((z - 6) ** 2 + (y - 10) ** 2 + (x - 10) ** 2)
    shell, hole = (distance <= 5) & (distance > 2), distance <= 2
    box = tuple(slice(0, n) for n in shape)
    positive = np.array([[6, 10, 14]])
    filled = _finish(box, shell, shape, positive, Prompts(positive)).astype(bool)
    assert np.array_equal(filled, shell | hole)
    kept = _finish(box, shell, shape, positive, Prompts(positive, np.array([[6, 10, 10]]))).astype(bool)
    assert np.array_equal(kept, shell)


def test_the_mask_is_finished_on_the_region_around_the_answer_as_on_the_whole_scan():
    """Hole filling and piece keeping run near the answer (on a 512x512x200 CT the whole-scan
    version took most of a click): the same mask for footprints at the scan's edge, a positive
    click outside the footprint, negative clicks anywhere and boxes."""
    from scipy import ndimage

    from napari_medvision.core.interactive.click_unet import _finish

    rng = np.random.default_rng(0)
    for case in range(200):
        shape = tuple(int(n) for n in rng.integers(8, 30, 3))
        low = rng.integers(0, np.array(shape) - 2)
        high = np.minimum(low + rng.integers(2, 20, 3), shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
        footprint = ndimage.binary_dilation(rng.random(high - low) > 0.97, iterations=2) & ~(rng.random(high - low) > 0.9)
        inside_footprint = [int(rng.integers(a, b)) for a, b in zip(low, high)]
        positive = np.array([[int(rng.integers(0, n)) for n in shape] if case % 3 == 0 else inside_footprint])
        negative = np.array([[int(rng.integers(0, n)) for n in shape] for _ in range(case % 4)]).reshape(-1, 3)
        corners = None
        if case % 5 == 0:
            first = np.minimum([int(rng.integers(0, n)) for n in shape], positive[0])
            corners = np.array([first, np.maximum(np.minimum(first + rng.integers(1, 15, 3), np.array(shape) - 1), positive[0])])
        prompts = Prompts(positive, negative, corners)
        full = np.zeros(shape, bool)
        full[box] = footprint
        finished = _finish(box, footprint, shape, positive, prompts)
        assert finished.shape == shape and finished.dtype == np.uint8
        assert np.array_equal(finished.astype(bool), _finish_on_the_whole_scan(full, positive, prompts)), case


def test_pasting_only_where_the_probability_can_pass_a_half_gives_the_same_mask():
    """``paste(..., above=0.5)`` computes only the part of a cube's footprint near its voxels over
    0.5 (on a big scan most of a large cube's footprint): the mask over 0.5 is the same as from the
    whole footprint, for cubes inside the scan, cut by its edges and bigger than it."""
    from scipy import ndimage

    from napari_medvision.core.interactive.cube import Cube

    rng = np.random.default_rng(1)
    spacing_zyx = np.array([2.5, 0.7, 0.7])
    shape = (40, 120, 110)
    smaller = 0
    for case in range(30):
        grid = np.stack(np.meshgrid(*[np.arange(48)] * 3, indexing="ij"), -1)
        blob = np.exp(-np.sum((grid - rng.uniform(0, 48, 3)) ** 2, -1) / (2 * rng.uniform(2, 15) ** 2))
        noise = ndimage.gaussian_filter(rng.random((48, 48, 48)), 2.0) - 0.5
        logits = rng.uniform(5, 40) * (blob * rng.uniform(0.4, 1.2) + 0.3 * noise - 0.5)   # a network's edge is sharp
        values = (1 / (1 + np.exp(-logits))).astype(np.float32)
        cube = Cube(tuple(float(c) for c in rng.uniform(-10, 130, 3)), float(rng.uniform(24, 200)))
        whole_box, whole = paste(values, cube, shape, spacing_zyx)
        box, part = paste(values, cube, shape, spacing_zyx, above=0.5)
        expected, got = np.zeros(shape, bool), np.zeros(shape, bool)
        expected[whole_box] = whole > 0.5
        got[box] = part > 0.5
        assert np.array_equal(got, expected), case
        assert all(b.start >= w.start and b.stop <= w.stop for b, w in zip(box, whole_box))
        smaller += np.prod([b.stop - b.start for b in box]) < np.prod([w.stop - w.start for w in whole_box])
    assert smaller >= 10   # the part is smaller than the footprint in most cases
