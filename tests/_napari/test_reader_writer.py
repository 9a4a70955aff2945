from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from napari_medvision._napari.layers import GEOMETRY_KEY
from napari_medvision._napari.reader import napari_get_reader, read_study
from napari_medvision._napari.sample_data import make_ct_phantom, make_mr_phantom
from napari_medvision._napari.writer import write_labels
from napari_medvision.core.errors import MedvisionError
from tests.conftest import make_image, write_dicom_series


def test_reader_declines_what_it_cannot_read_without_raising(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    assert napari_get_reader(str(tmp_path / "notes.txt")) is None
    assert napari_get_reader(str(tmp_path / "missing.nii.gz")) is None
    assert napari_get_reader(str(tmp_path / "sub")) is None


def test_reader_reports_a_corrupt_file_instead_of_raising(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    path = tmp_path / "broken.nii.gz"
    path.write_text("not an image")
    reader = napari_get_reader(str(path))
    assert reader is not None
    assert reader(str(path)) == [(None,)]
    assert "broken.nii.gz" in shown[0]


def test_reader_gives_image_and_labels_with_the_same_affine(tmp_path):
    sitk.WriteImage(make_image(geometry="oblique"), str(tmp_path / "ct.nrrd"))
    label = sitk.Cast(make_image(geometry="oblique") > 500, sitk.sitkUInt8)
    sitk.WriteImage(label, str(tmp_path / "ct_label.nrrd"))
    (image_data, image_kwargs, image_kind), = read_study(str(tmp_path / "ct.nrrd"))
    (label_data, label_kwargs, label_kind), = read_study(str(tmp_path / "ct_label.nrrd"))
    assert (image_kind, label_kind) == ("image", "labels")
    assert image_kwargs["name"] == "ct" and label_kwargs["name"] == "ct_label"
    np.testing.assert_array_equal(image_kwargs["affine"], label_kwargs["affine"])
    assert image_kwargs["metadata"][GEOMETRY_KEY]["spacing"] == [0.8, 1.1, 2.5]


def test_reader_opens_a_dicom_folder(tmp_path):
    write_dicom_series(tmp_path / "study", np.full((3, 6, 6), -500, np.int16))
    reader = napari_get_reader(str(tmp_path / "study"))
    (data, kwargs, kind), = reader(str(tmp_path / "study"))
    assert kind == "image" and data.shape == (3, 6, 6) and data.min() == -500
    assert kwargs["metadata"]["modality"] == "CT"


def test_reader_offers_the_first_volume_of_a_4d_file(tmp_path, monkeypatch):
    warnings = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", warnings.append)
    frames = np.stack([np.full((4, 5, 6), t, np.int16) for t in range(3)])
    sitk.WriteImage(sitk.GetImageFromArray(frames, isVector=False), str(tmp_path / "dyn.nii.gz"))
    (data, _, _), = read_study(str(tmp_path / "dyn.nii.gz"))
    assert data.shape == (4, 5, 6) and np.all(data == 0)
    assert any("volume 0 of 3" in w for w in warnings)


def test_writer_failure_raises_a_medvision_error_and_keeps_the_data(tmp_path):
    data, kwargs, _ = make_ct_phantom()[1]
    before = data.copy()
    with pytest.raises(MedvisionError, match="does not exist"):
        write_labels(str(tmp_path / "missing" / "x.nii.gz"), data, {"metadata": kwargs["metadata"]})
    np.testing.assert_array_equal(data, before)


@pytest.mark.parametrize("make", [make_ct_phantom, make_mr_phantom])
def test_sample_data_layers_line_up(make):
    (image, image_kwargs, kind), (labels, label_kwargs, label_kind) = make()
    assert (kind, label_kind) == ("image", "labels")
    assert image.shape == labels.shape
    np.testing.assert_array_equal(image_kwargs["affine"], label_kwargs["affine"])
    assert set(label_kwargs["features"]["name"]) >= {"liver", "lung", "lesion"}


MANIFEST = Path(__file__).resolve().parents[2] / "src" / "napari_medvision" / "napari.yaml"


def write_picture(path):
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)), str(path))
    return path


@pytest.mark.parametrize("name", ["xray.png", "photo.jpg", "photo.jpeg", "cells.tif", "cells.tiff"])
def test_reader_leaves_ordinary_pictures_to_others(tmp_path, name):
    assert napari_get_reader(str(write_picture(tmp_path / name))) is None


def test_reader_leaves_a_file_without_ending_that_is_not_dicom(tmp_path):
    (tmp_path / "README").write_bytes(b"plain text, not DICOM\n" * 20)
    assert napari_get_reader(str(tmp_path / "README")) is None


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_reader_claims_medical_volumes(tmp_path, suffix):
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(make_image(), str(path))
    (data, kwargs, kind), = napari_get_reader(str(path))(str(path))
    assert kind == "image" and data.shape == (6, 9, 11) and kwargs["name"] == "ct"


def test_reader_claims_dicom_files_by_ending_and_by_content(tmp_path):
    paths = write_dicom_series(tmp_path / "study", np.full((2, 6, 6), 30, np.int16))
    bare = tmp_path / "IM000001"        # as DICOMDIR exports name them: no ending at all
    bare.write_bytes(paths[0].read_bytes())
    for path in (paths[0], bare):
        (data, _, kind), = napari_get_reader(str(path))(str(path))
        assert kind == "image" and data.shape == (1, 6, 6) and data.max() == 30


def test_manifest_offers_the_reader_for_medical_files_and_folders_only(tmp_path):
    from npe2 import PluginManager, PluginManifest

    manager = PluginManager()
    manager.register(PluginManifest.from_file(MANIFEST))

    def ours(path):
        return [r.command for r in manager.iter_compatible_readers([str(path)])] == ["napari-medvision.get_reader"]

    for name in ("ct.nii", "CT.NII.GZ", "t1.nrrd", "t1.nhdr", "x.mha", "x.mhd", "slice.dcm", "slice.DICOM", "x.ima"):
        assert ours(tmp_path / name), name
    (tmp_path / "series").mkdir()
    assert ours(tmp_path / "series"), "a DICOM folder comes through accepts_directories"
    for name in ("xray.png", "photo.jpg", "photo.jpeg", "cells.tif", "cells.tiff", "movie.mp4", "IM000001"):
        assert not ours(tmp_path / name), name
