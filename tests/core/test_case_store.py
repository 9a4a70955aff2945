"""The case store on disk: nnU-Net layout, dataset.json, cases whole or absent (also after a crash)."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import SimpleITK as sitk

from napari_medvision.core.errors import GeometryMismatchError, MedvisionError
from napari_medvision.core.training import CaseStore
from napari_medvision.core.volume import Volume

LABELS = {"background": 0, "Leber ß": 1, "lung": 2}


def case(seed=0, shape=(4, 6, 8), origin=(1.0, 2.0, 3.0)):
    rng = np.random.default_rng(seed)
    image = Volume(rng.integers(-1000, 1000, shape).astype(np.int16), (0.75, 0.5, 3.0), origin)
    return image, image.with_array(rng.integers(0, 3, shape).astype(np.int64))


def dataset(store):
    return json.loads((store.root / "dataset.json").read_text(encoding="utf-8"))


def add_case_dying_at_rename(store, case_id, shape, rename):
    """Add a case of ``shape`` in a child process that dies (exit 9) at its ``rename``-th os.replace."""
    code = textwrap.dedent(f"""
        import os
        import numpy as np
        from napari_medvision.core.training import CaseStore
        from napari_medvision.core.volume import Volume
        real, count = os.replace, []
        def dying_replace(*args):
            count.append(1)
            if len(count) == {rename}:
                os._exit(9)
            real(*args)
        os.replace = dying_replace
        image = Volume(np.zeros({shape!r}, np.int16), (0.75, 0.5, 3.0))
        CaseStore({str(store.root)!r}).add_case({case_id!r}, image, image.with_array(np.ones({shape!r}, np.uint8)))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert result.returncode == 9, result.stderr


def test_create_writes_the_nnunet_dataset_json_and_reopens(tmp_path):
    store = CaseStore.create(tmp_path / "a" / "b" / "liver", LABELS, channel="MR", source="test")
    assert dataset(store) == {"name": "liver", "channel_names": {"0": "MR"}, "labels": LABELS, "numTraining": 0,
                              "file_ending": ".nii.gz", "medvision": {"source": "test"}}
    assert store.images_dir.is_dir() and store.labels_dir.is_dir()
    store.add_case("c1", *case())
    again = CaseStore.create(store.root, LABELS, name="Liver study")   # an existing store opens again
    assert dataset(again)["name"] == "Liver study" and "medvision" not in dataset(again)
    assert dataset(again)["numTraining"] == 1 and again.case_ids() == ["c1"]
    assert again.label_names() == {1: "Leber ß", 2: "lung"}


def test_a_folder_without_dataset_json_is_not_a_store(tmp_path):
    with pytest.raises(MedvisionError, match=f"'{tmp_path}' is not a case store \\(no dataset.json\\)"):
        CaseStore(tmp_path).dataset()


def test_add_case_counts_and_stores_labels_compactly_with_the_image_geometry(tmp_path):
    store = CaseStore.create(tmp_path / "s", LABELS)
    image, label = case()
    store.add_case("c.2-b_x", image, label)
    assert store.case_ids() == ["c.2-b_x"] and dataset(store)["numTraining"] == 1
    written = sitk.ReadImage(str(store.label_path("c.2-b_x")))
    assert written.GetPixelID() == sitk.sitkUInt8, "a label map in the smallest integer type"
    back_image, back_label = store.read_case("c.2-b_x")
    np.testing.assert_array_equal(back_label.array, label.array)
    np.testing.assert_array_equal(back_image.array, image.array)
    assert back_image.geometry == back_label.geometry == image.geometry
    assert store.read_edits("c.2-b_x") is None, "added without a model output: no edit mask"


@pytest.mark.parametrize("name", ["", "../escape", "with space", "-leading", "a/b"])
def test_case_names_that_are_not_plain_file_names_are_refused(tmp_path, name):
    store = CaseStore.create(tmp_path / "s", LABELS)
    with pytest.raises(MedvisionError, match="may use only letters, digits, '_', '-' and '.'"):
        store.add_case(name, *case())
    assert store.case_ids() == [] and not any(store.labels_dir.iterdir())


def test_geometry_mismatches_are_refused_and_nothing_is_written(tmp_path):
    store = CaseStore.create(tmp_path / "s", LABELS)
    image, label = case()
    shifted = case(origin=(9.0, 2.0, 3.0))[1]
    with pytest.raises(GeometryMismatchError, match="label map does not match"):
        store.add_case("c1", image, shifted)
    with pytest.raises(GeometryMismatchError, match="^the model output does not match"):
        store.add_case("c1", image, label, model_output=shifted)
    assert store.case_ids() == [] and not store.edits_dir.exists()


def test_remove_case_deletes_its_three_files(tmp_path):
    store = CaseStore.create(tmp_path / "s", LABELS)
    image, label = case()
    store.add_case("keep", image, label)
    store.add_case("drop", image, label, model_output=label.with_array(np.zeros(label.shape, np.uint8)))
    assert store.read_edits("drop").array.dtype == np.uint8
    store.remove_case("drop")
    assert store.case_ids() == ["keep"] and dataset(store)["numTraining"] == 1
    assert not store.label_path("drop").exists() and not store.edit_path("drop").exists()
    assert not store.image_path("drop").exists()
    store.remove_case("never-added")                 # nothing to remove is fine
    assert store.case_ids() == ["keep"]


def test_a_process_killed_while_adding_a_case_leaves_no_half_case(tmp_path):
    store = CaseStore.create(tmp_path / "s", LABELS)
    image, label = case()
    store.add_case("old", image, label)
    before = {p.name: p.read_bytes() for p in (store.image_path("old"), store.label_path("old"))}
    # The process dies when its second file is about to be published (both are still staged).
    add_case_dying_at_rename(store, "new", (4, 6, 8), rename=2)
    assert store.case_ids() == ["old"], "the new case is not listed: its image was never published"
    assert {p.name: p.read_bytes() for p in (store.image_path("old"), store.label_path("old"))} == before


def test_several_cases_with_edit_masks(tmp_path):
    store = CaseStore.create(tmp_path / "s", LABELS)
    for number in (1, 2):
        image, label = case(number)
        store.add_case(f"c{number}", image, label, model_output=label.with_array(np.zeros(label.shape, np.uint8)))
    assert store.case_ids() == ["c1", "c2"]
    np.testing.assert_array_equal(store.read_edits("c2").array, (case(2)[1].array != 0).astype(np.uint8))


def test_replacing_a_case_without_edits_drops_its_stale_edit_mask(tmp_path):
    store = CaseStore.create(tmp_path / "s", LABELS)
    image, label = case()
    store.add_case("c", image, label, model_output=label.with_array(np.zeros(label.shape, np.uint8)))
    assert store.edit_path("c").exists()
    store.add_case("c", image, label)           # corrected again, this time from scratch
    assert store.read_edits("c") is None, "an edit mask of the old label would mislead fine-tuning"
    assert store.case_ids() == ["c"]
    assert not list((store.root / ".staging").iterdir()), "staged files are cleaned up"


def test_a_process_killed_while_replacing_a_case_never_shows_a_new_label_beside_the_old_image(tmp_path):
    store = CaseStore.create(tmp_path / "s", LABELS)
    image, label = case(shape=(4, 6, 8))
    store.add_case("c", image, label)
    # The process dies just before the new label is published (the 4th rename: two staged files,
    # then the image, then the label); the new image has another grid than the old label.
    add_case_dying_at_rename(store, "c", (5, 6, 8), rename=4)
    assert store.case_ids() == [], "a case whose label and image come from two different adds is hidden"
    assert store.incomplete_cases() == {"c": "no label file"}
    store.add_case("c", image, label)            # the next add repairs it
    assert store.case_ids() == ["c"]
    store.check_geometry("c")
