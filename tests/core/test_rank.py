""""Label next": ``medvision rank`` orders a folder of studies by the model's uncertainty."""

import json

import pytest

from napari_medvision.core.errors import MedvisionError
from napari_medvision.core.interactive.rank import find_studies
from napari_medvision.core.io import write_volume
from napari_medvision.core.phantom import generate_phantom, shift_appearance
from tests.core.test_interactive import medvision


def test_find_studies_skips_labels_and_other_files(tmp_path):
    case = generate_phantom(1, shape=(8, 16, 16))
    write_volume(case.image, tmp_path / "a.nii.gz")
    write_volume(case.label, tmp_path / "a_label.nii.gz", labels=True)
    (tmp_path / "notes.txt").write_text("not a study")
    assert find_studies(tmp_path) == [tmp_path / "a.nii.gz"]
    with pytest.raises(MedvisionError, match="no studies"):
        find_studies(_empty(tmp_path))


def _empty(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def test_cli_rank_json_most_uncertain_first(tmp_path):
    small = dict(shape=(32, 64, 64), spacing=(5.6, 5.6, 10.0))
    write_volume(generate_phantom(1, **small).image, tmp_path / "usual.nii.gz")
    write_volume(shift_appearance(generate_phantom(2, **small)).image, tmp_path / "shifted.nii.gz")
    result = medvision("rank", "--model", "ct_organs_unet", "--input", tmp_path, "--json")
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert sorted(r["path"] for r in records) == sorted(str(tmp_path / n) for n in ("shifted.nii.gz", "usual.nii.gz"))
    scores = [r["score"] for r in records]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores) and scores[0] > 0


def test_cli_rank_refuses_a_file(tmp_path):
    result = medvision("rank", "--model", "ct_organs_unet", "--input", tmp_path / "missing", "--json")
    assert result.returncode == 2 and result.stderr.startswith("error:") and "not a folder" in result.stderr
