"""The model-free engine on the cases that made it fail on real scans (issue 15's benchmark).

Each case is small and synthetic but has what the real scans have: thick slices (6.5 mm) and a
flipped axis, a lesion barely brighter than its organ, a blurred boundary to a very different tissue,
a structure cut by the image's edge, corrections one slice from a click of the other sign. The
simulated user is the benchmark's (``core/interactive/simulate.py``).
"""

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from napari_medvision.core.interactive import Prompts
from napari_medvision.core.interactive.random_walk import RandomWalkEngine
from napari_medvision.core.interactive.simulate import simulate_session
from napari_medvision.core.io import read_volume
from napari_medvision.core.metrics import dice


def _grid(shape, spacing_zyx):
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    return z * spacing_zyx[0], y * spacing_zyx[1], x * spacing_zyx[2]


def _ellipsoid(shape, spacing_zyx, centre_mm, radii_mm):
    z, y, x = _grid(shape, spacing_zyx)
    return ((z - centre_mm[0]) / radii_mm[0]) ** 2 + ((y - centre_mm[1]) / radii_mm[1]) ** 2 \
        + ((x - centre_mm[2]) / radii_mm[2]) ** 2 <= 1


def _mr_like(tmp_path, seed=0):
    """An MR-like int16 scan (0.8 x 0.8 x 6.5 mm, y flipped) of a 14 x 11 x 13 mm lesion in an organ
    whose intensity is 5 noise levels below the lesion's (blurred by the scanner), read back."""
    shape, spacing = (20, 96, 96), (6.5, 0.8, 0.8)
    organ = _ellipsoid(shape, spacing, (65, 38, 38), (50, 30, 30))
    lesion = _ellipsoid(shape, spacing, (65, 40, 44), (6.5, 5.5, 7))
    image = 200.0 + 300 * organ + 150 * lesion
    image = ndimage.gaussian_filter(image, (0.4, 1.2, 1.2))
    image += np.random.default_rng(seed).normal(0, 30, shape)
    scan = sitk.GetImageFromArray(image.astype(np.int16))
    scan.SetSpacing(spacing[::-1])
    scan.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, 1))
    sitk.WriteImage(scan, str(tmp_path / "scan.nrrd"))
    volume = read_volume(tmp_path / "scan.nrrd")
    assert volume.array.shape == shape and np.allclose(volume.spacing, spacing[::-1])
    return volume.array, volume.spacing, lesion


def test_anisotropic_flipped_lesion_three_clicks_and_no_collapse(tmp_path):
    image, spacing, lesion = _mr_like(tmp_path)
    dices, _ = simulate_session(RandomWalkEngine(), image, spacing, lesion, max_clicks=8)
    assert dices[min(2, len(dices) - 1)] > 0.75, dices
    # A correction may cost a little; it must never undo most of what the earlier clicks got.
    assert all(later > best - 0.15 for best, later in zip(np.maximum.accumulate(dices), dices[1:])), dices


def test_negative_click_one_thick_slice_from_a_positive_keeps_the_lesion():
    # A 7 mm lesion on 2.1 mm slices; the negative click is one slice above its top, 2.2 mm from a
    # positive click: it must trim the slice above, not wipe the lesion out.
    shape, spacing = (16, 40, 40), (2.1, 0.66, 0.66)
    lesion = _ellipsoid(shape, spacing, (16.8, 13, 13), (3.2, 3.5, 3.5))
    image = ndimage.gaussian_filter(60.0 + 80 * lesion, (0.5, 1, 1))
    image += np.random.default_rng(1).normal(0, 8, shape)
    top = int(np.argwhere(lesion)[:, 0].max())
    prompts = Prompts(positive=[(8, 20, 20), (top, 20, 20)], negative=[(top + 1, 20, 20)])
    mask = RandomWalkEngine().segment(image.astype(np.float32), spacing[::-1], prompts)
    assert dice(mask, lesion) > 0.75 and not mask[top + 1:].any()


def test_structure_cut_by_the_image_edge_is_not_background():
    # A slab filling the image's first 12 columns (a structure the field of view cuts).
    shape, spacing = (12, 40, 40), (3.0, 1.0, 1.0)
    slab = np.zeros(shape, bool)
    slab[:, :, :12] = True
    image = 100.0 * slab + np.random.default_rng(2).normal(0, 10, shape)
    mask = RandomWalkEngine().segment(image.astype(np.float32), spacing[::-1], Prompts(positive=[(0, 2, 2)]))
    assert dice(mask, slab) > 0.9


def test_blurred_nodule_in_air_one_click():
    # A 10 mm nodule (35 HU) in lung (-850 HU) at 2.8 x 2.8 x 5 mm, blurred: its edge is half-way.
    shape, spacing = (12, 32, 32), (5.0, 2.8, 2.8)
    nodule = _ellipsoid(shape, spacing, (30, 45, 45), (6, 6, 6))
    image = ndimage.gaussian_filter(np.where(nodule, 35.0, -850.0), (0.4, 0.7, 0.7))
    image += np.random.default_rng(3).normal(0, 15, shape)
    centre = tuple(int(v) for v in np.round(ndimage.center_of_mass(nodule)))
    mask = RandomWalkEngine().segment(image.astype(np.float32), spacing[::-1], Prompts(positive=[centre]))
    assert dice(mask, nodule) > 0.75


def test_negative_click_in_a_whole_image_structure_does_not_leak_into_a_third_tissue():
    # The structure fills the image to every edge around an insert (the prostate scan's label 9, the
    # material around its phantom), and a third tissue, 5 noise levels brighter than the structure,
    # touches it. No crop side is background, so a negative click on the insert was the whole
    # background sample: the third tissue, like neither, was undecided and the mask leaked into it
    # (Dice 0.97 -> 0.77 for one negative click).
    shape, spacing = (12, 48, 48), (3.0, 0.8, 0.8)
    insert = _ellipsoid(shape, spacing, (18, 19, 19), (30, 14, 14))
    third = ~insert & (np.indices(shape)[2] >= 34)
    structure = ~insert & ~third
    image = ndimage.gaussian_filter(np.where(structure, 100.0, np.where(insert, 300.0, 150.0)), (0.3, 0.8, 0.8))
    image = (image + np.random.default_rng(4).normal(0, 10, shape)).astype(np.float32)
    engine = RandomWalkEngine()
    before = engine.segment(image, spacing[::-1], Prompts(positive=[(6, 2, 2)]))
    after = engine.segment(image, spacing[::-1], Prompts(positive=[(6, 2, 2)], negative=[(6, 24, 18)]))
    assert dice(before, structure) > 0.9
    assert dice(after, structure) > 0.9 and not (after & third).sum() > 0.05 * third.sum()


def _fine_ct_lesion(seed=0):
    """A fine, noisy CT grid (0.75 x 0.75 x 1.5 mm, noise 20 HU): a 9 mm lesion 35 HU darker than
    its organ, with a darker core, and the lesion's box (its extent plus 2 mm)."""
    shape, spacing = (24, 64, 64), (1.5, 0.75, 0.75)
    organ = _ellipsoid(shape, spacing, (18, 24, 24), (30, 30, 30))
    lesion = _ellipsoid(shape, spacing, (18, 24, 24), (4.5, 4.5, 4.5))
    core = _ellipsoid(shape, spacing, (18, 24, 24), (2.0, 2.0, 2.0))
    image = -100.0 + 200 * organ - 35 * lesion - 20 * core
    image = ndimage.gaussian_filter(image, (0.5, 1.0, 1.0)) + np.random.default_rng(seed).normal(0, 20, shape)
    where, pad = np.argwhere(lesion), np.array([1, 3, 3])
    box = np.array([where.min(0) - pad, where.max(0) + pad])
    return image.astype(np.int16), spacing[::-1], lesion, box


def test_a_box_around_a_small_noisy_lesion_in_an_organ_gives_the_lesion():
    # Seeded only at the box's centre, the walker's bias against the background all round the box
    # gave the lesion's core (Dice 0.21 for seed 0); the box's middle third is structure seed now.
    for seed in range(3):
        image, spacing, lesion, box = _fine_ct_lesion(seed)
        mask = RandomWalkEngine().segment(image, spacing, Prompts(positive=np.zeros((0, 3), int), box=box))
        assert dice(mask, lesion) > 0.75, (seed, dice(mask, lesion))


def _kidney_with_a_fatty_core(seed):
    """A kidney-like organ on 2.8 x 2.8 x 5 mm CT voxels: a cortex (185 HU, its outer 5 mm) round a
    medulla (115 HU) and a fat core (-60 HU) that is part of it, as a tumour's necrotic core is, in
    muscle (50 HU): ``(int16 image, spacing xyz, organ)``."""
    shape, spacing = (16, 40, 40), (5.0, 2.8, 2.8)
    organ = _ellipsoid(shape, spacing, (40, 56, 56), (25, 18, 16))
    depth = ndimage.distance_transform_edt(organ, sampling=spacing)
    image = np.where(organ, np.where(depth <= 5, 185.0, 115.0), 50.0)
    image[organ & (depth > 0.75 * depth.max())] = -60
    noisy = ndimage.gaussian_filter(image, 0.7) + np.random.default_rng(seed).normal(0, 15, shape)
    return noisy.astype(np.int16), spacing[::-1], organ


def test_a_structure_whose_core_is_another_tissue_grows_with_each_click_on_its_rim():
    # The first click, at the innermost voxel, lands on the fat. Each later click on the parenchyma
    # used to add only its own few millimetres (Dice 0.37-0.39 after 6 clicks): the second tissue's
    # model was sampled at its first click alone.
    for seed in (0, 1):
        image, spacing, organ = _kidney_with_a_fatty_core(seed)
        dices, _ = simulate_session(RandomWalkEngine(), image, spacing, organ, max_clicks=6)
        # (Since the second and third clicks on it make it the structure, the rim is found by click
        # 3; the later border corrections cost up to 0.16 on the way.)
        assert dices[-1] > 0.85 and max(dices) > 0.9, dices


def test_two_clicks_either_side_of_a_core_make_the_tissue_round_it_the_structure():
    # The first click lands on the fat core, the simulated user's next two on the parenchyma either
    # side of it. That tissue then holds over the whole crop: Dice after 3 clicks 0.93-0.97 (it was
    # 0.10-0.30: each click on it added only its own few millimetres).
    image, spacing, organ = _kidney_with_a_fatty_core(0)
    dices, _ = simulate_session(RandomWalkEngine(), image, spacing, organ, max_clicks=3)
    assert dices[-1] > 0.85, dices


def _organ_with_a_fatty_core():
    """An organ (110 HU) round a 12 mm fatty core (-60 HU) in muscle (50 HU), 3 x 1 x 1 mm voxels."""
    shape, spacing = (16, 48, 48), (3.0, 1.0, 1.0)
    organ = _ellipsoid(shape, spacing, (24, 24, 24), (20, 18, 18))
    core = _ellipsoid(shape, spacing, (24, 24, 24), (6, 6, 6))
    image = ndimage.gaussian_filter(np.where(core, -60.0, np.where(organ, 110.0, 50.0)), (0.3, 0.8, 0.8))
    image = (image + np.random.default_rng(5).normal(0, 8, shape)).astype(np.float32)
    return image, spacing[::-1], organ, core


def test_a_negative_click_in_a_hole_of_the_mask_keeps_that_hole_open():
    # Holes are filled (vessels inside a liver are liver), but a negative click on one says it is
    # not part of the structure: filling it again undid the click, and the same click came back.
    image, spacing, organ, core = _organ_with_a_fatty_core()
    engine = RandomWalkEngine()
    before = engine.segment(image, spacing, Prompts(positive=[(4, 24, 24)])).astype(bool)
    assert before[core].all() and dice(before, organ) > 0.9            # the core is a hole, filled
    after = engine.segment(image, spacing, Prompts(positive=[(4, 24, 24)], negative=[(8, 24, 24)])).astype(bool)
    assert after[core].mean() < 0.1 and dice(after, organ & ~core) > 0.9   # was all of the core


def test_a_negative_click_on_look_alike_tissue_splits_at_the_border_not_half_way():
    # A negative click on tissue that looks like the structure splits the two by position. Half-way
    # between the clicks cut a spleen in half when the negative click lay on the kidney beside it;
    # along paths that pay for the intensity step they cross, the split falls at the border.
    from napari_medvision.core.interactive.random_walk import _nearer_positive

    data = np.zeros((1, 20, 40))                 # a one-slice working grid, as a 2D image has
    data[..., 20:] = 6.0                         # the neighbour: 6 spreads brighter, from x = 20
    nearer = _nearer_positive(data, np.ones(3), np.array([[0, 10, 2]]), np.array([[0, 10, 26]]))
    assert (nearer[..., :19] > 0.5).all()        # half-way (x = 14) took x = 15-18 from the structure
    assert (nearer[..., 22:] < 0.5).all()


def test_a_negative_click_next_to_a_second_tissue_model_unlike_it_keeps_the_structure():
    # A cylinder on 3 mm slices whose intensity drifts along the scan (a bias field, 1500 -> 1720),
    # inside a thin brighter rim that is not part of it: the click on slice 9 makes a second click
    # model. A negative click on the rim one slice above, unlike that model, shortened the second
    # model's reach to half the gap and the structure collapsed to the slices around the first click
    # (real prostate insert: Dice 0.86 -> 0.44; here 0.88 -> 0.45).
    shape, spacing = (13, 64, 64), (3.0, 0.5, 0.5)
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    radius = np.hypot((y - 32) * spacing[1], (x - 32) * spacing[2])
    cylinder = np.broadcast_to(radius <= 4.0, shape)
    rim = np.broadcast_to((radius > 4.0) & (radius <= 5.0), shape)
    ramp = 1500 + 220 * np.clip(z / 9.0, 0, 1)
    image = np.where(cylinder, ramp, np.where(rim, ramp + 60, 100.0))
    image = ndimage.gaussian_filter(image, (0.3, 0.8, 0.8)) + np.random.default_rng(0).normal(0, 17, shape)
    engine, prompts = RandomWalkEngine(), Prompts(positive=[[1, 32, 32], [9, 32, 33]])
    before = engine.segment(image, spacing[::-1], prompts).astype(bool)
    assert dice(before, cylinder) > 0.85
    after = engine.segment(image, spacing[::-1], prompts.add((10, 32, 41), False)).astype(bool)
    assert dice(after, cylinder) > dice(before, cylinder) - 0.05
    assert all((after[k] & cylinder[k]).sum() > 0.8 * cylinder[k].sum() for k in range(shape[0]))
