import json

import numpy as np
import pytest

from napari_medvision.core.io import read_volume
from napari_medvision.core.phantom import LABELS, generate_phantom, write_phantom_dataset
from napari_medvision.core.training import CaseStore

SMALL = dict(shape=(32, 64, 64), spacing=(5.6, 5.6, 10.0))


def test_same_seed_same_case_other_seed_other_case():
    a, b, c = generate_phantom(7, **SMALL), generate_phantom(7, **SMALL), generate_phantom(8, **SMALL)
    np.testing.assert_array_equal(a.image.array, b.image.array)
    np.testing.assert_array_equal(a.label.array, b.label.array)
    assert not np.array_equal(a.label.array, c.label.array)


def test_ct_has_every_tissue_at_plausible_hu():
    case = generate_phantom(3, max_lesions=3, lesion_probability=1.0)
    image, label = case.image.array, case.label.array
    assert image.dtype == np.int16 and case.image.modality == "CT"
    assert set(np.unique(label)) == set(LABELS.values())
    median = {name: np.median(image[label == value]) for name, value in LABELS.items()}
    assert median["background"] < -900
    assert -950 < median["lung"] < -700
    assert 80 < median["liver"] < 150 and 80 < median["spleen"] < 150
    assert median["liver"] > median["body"] + 20, "enhanced organs stand out from muscle"
    assert median["bone"] > 250
    body = label == LABELS["body"]
    assert (image[body] < -50).mean() > 0.05, "subcutaneous and visceral fat present"


def test_lesions_have_boxes_that_contain_them():
    case = generate_phantom(11, max_lesions=4, lesion_probability=1.0, **SMALL)
    assert case.lesion_present and 1 <= len(case.lesions) <= 4
    lesion_voxels = np.argwhere(case.label.array == LABELS["lesion"])[:, ::-1]  # (x, y, z)
    world = case.image.index_to_world(lesion_voxels)
    inside = np.zeros(len(world), bool)
    for lesion in case.lesions:
        low, high = np.array(lesion.box_world[:3]), np.array(lesion.box_world[3:])
        assert np.all(high - low == pytest.approx(lesion.diameter_mm, abs=1e-6))
        inside |= np.all((world >= low - 1e-6) & (world <= high + 1e-6), axis=1)
    assert inside.all()


def test_lesion_free_cases_exist():
    assert not generate_phantom(0, lesion_probability=0.0, **SMALL).lesion_present


def test_anisotropic_spacing_keeps_anatomy_in_millimetres():
    fine = generate_phantom(5, shape=(40, 128, 128), spacing=(2.8, 2.8, 8.0))
    coarse = generate_phantom(5, shape=(40, 64, 64), spacing=(5.6, 5.6, 8.0))
    assert fine.image.spacing == (2.8, 2.8, 8.0)
    voxel_ml = lambda case: np.prod(case.image.spacing) / 1000  # noqa: E731
    liver = lambda case: (case.label.array == LABELS["liver"]).sum() * voxel_ml(case)  # noqa: E731
    assert liver(fine) == pytest.approx(liver(coarse), rel=0.1)


def test_mr_flavour_and_direction():
    flip = np.diag([1.0, -1.0, 1.0])
    case = generate_phantom(2, modality="MR", direction=flip, **SMALL)
    assert case.image.modality == "MR" and case.image.array.min() >= 0
    np.testing.assert_array_equal(case.image.direction, flip)
    fat_like = np.median(case.image.array[case.label.array == LABELS["body"]])
    assert fat_like > np.median(case.image.array[case.label.array == LABELS["lung"]])


def test_dataset_written_in_case_store_layout(tmp_path):
    store = write_phantom_dataset(tmp_path / "ds", cases=3, seed=4, **SMALL)
    assert isinstance(store, CaseStore)
    assert store.case_ids() == ["phantom_000", "phantom_001", "phantom_002"]
    dataset = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert dataset["labels"] == LABELS and dataset["numTraining"] == 3
    assert dataset["channel_names"] == {"0": "CT"} and dataset["file_ending"] == ".nii.gz"
    assert (tmp_path / "ds" / "imagesTr" / "phantom_000_0000.nii.gz").is_file()
    annotations = json.loads((tmp_path / "ds" / "annotations.json").read_text())
    assert set(annotations["cases"]) == set(store.case_ids())
    image, label = store.read_case("phantom_001")
    assert image.geometry == label.geometry
    entry = annotations["cases"]["phantom_001"]
    regenerated = generate_phantom(entry["seed"], **SMALL)
    np.testing.assert_array_equal(image.array, regenerated.image.array)
    assert entry["lesion_present"] == regenerated.lesion_present
    assert read_volume(store.label_path("phantom_001")).array.dtype == np.uint8
