"""Every bad input gives one clear MedvisionError and loses nothing."""

import gzip
import os

import numpy as np
import pytest
import SimpleITK as sitk

from napari_medvision.core.errors import (
    FourDimensionalError,
    GeometryMismatchError,
    MedvisionError,
    UnreadableFileError,
    UnsupportedFormatError,
    WriteError,
)
from napari_medvision.core.io import read_label_for, read_volume, write_volume
from tests.conftest import make_image, write_dicom_series


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and message
    return message


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(UnreadableFileError) as exc:
        read_volume(tmp_path / "empty.nii.gz")
    assert "empty" in one_line(exc)


def test_truncated_nii_gz(tmp_path):
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(make_image(shape=(20, 40, 40)), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableFileError) as exc:
        read_volume(path)
    assert "'ct.nii.gz' is truncated" in one_line(exc)


@pytest.mark.parametrize("ext", [".nii", ".nrrd", ".mha"])
def test_truncated_uncompressed_files(tmp_path, ext):
    path = tmp_path / f"ct{ext}"
    sitk.WriteImage(make_image(shape=(20, 40, 40)), str(path), useCompression=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(UnreadableFileError) as exc:
        read_volume(path)
    assert f"ct{ext}" in one_line(exc)


def test_text_file_renamed_nii_gz(tmp_path):
    path = tmp_path / "notes.nii.gz"
    path.write_text("this is not an image\n" * 20)
    with pytest.raises(UnreadableFileError) as exc:
        read_volume(path)
    assert "cannot be read" in one_line(exc)


def test_gzipped_text_renamed_nii_gz(tmp_path):
    path = tmp_path / "notes.nii.gz"
    path.write_bytes(gzip.compress(b"hello" * 100))
    with pytest.raises(UnreadableFileError):
        read_volume(path)


def test_unknown_extension(tmp_path):
    path = tmp_path / "scan.xyz"
    path.write_bytes(b"\x00" * 300)
    with pytest.raises(UnsupportedFormatError) as exc:
        read_volume(path)
    assert ".nii.gz" in one_line(exc)


def test_missing_path(tmp_path):
    with pytest.raises(UnreadableFileError, match="does not exist"):
        read_volume(tmp_path / "nowhere.nrrd")


def test_folder_without_dicom(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(UnreadableFileError) as exc:
        read_volume(tmp_path)
    assert "no DICOM series" in one_line(exc)


def test_dicom_series_with_missing_slice_warns(tmp_path):
    hu = np.zeros((5, 8, 8), np.int16)
    write_dicom_series(tmp_path, hu, z_positions=[0.0, 2.5, 5.0, 10.0, 12.5])
    volume = read_volume(tmp_path)
    assert volume.shape == (5, 8, 8)
    assert any("uneven slice spacing" in w and "missing" in w for w in volume.warnings)


def test_4d_nifti_is_refused_with_a_choice(tmp_path):
    path = tmp_path / "fmri.nii.gz"
    frames = np.stack([np.full((4, 5, 6), t, np.int16) for t in range(3)])
    sitk.WriteImage(sitk.GetImageFromArray(frames, isVector=False), str(path))
    with pytest.raises(FourDimensionalError) as exc:
        read_volume(path)
    assert "4D" in one_line(exc) and "3 volumes" in str(exc.value)
    assert exc.value.frames == 3
    second = read_volume(path, frame=2)
    assert second.shape == (4, 5, 6)
    assert np.all(second.array == 2)
    with pytest.raises(UnreadableFileError, match="frame 7"):
        read_volume(path, frame=7)


def test_nan_and_inf_are_replaced_with_a_warning(tmp_path):
    array = np.linspace(-5, 5, 60, dtype=np.float32).reshape(3, 4, 5)
    array[0, 0, 0], array[1, 1, 1], array[2, 2, 2] = np.nan, np.inf, -np.inf
    path = tmp_path / "nan.mha"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    volume = read_volume(path)
    assert np.isfinite(volume.array).all()
    assert volume.array[0, 0, 0] == pytest.approx(array[np.isfinite(array)].min())
    assert any("3 NaN/infinite" in w for w in volume.warnings)


def test_all_nan_image_is_refused(tmp_path):
    path = tmp_path / "nan.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((2, 2, 2), np.nan, np.float32)), str(path))
    with pytest.raises(UnreadableFileError, match="no finite"):
        read_volume(path)


def test_label_with_other_geometry_is_refused_and_says_how(tmp_path):
    image_path, label_path = tmp_path / "ct.nrrd", tmp_path / "ct_label.nrrd"
    sitk.WriteImage(make_image(geometry="anisotropic"), str(image_path))
    label = sitk.Cast(make_image(geometry="anisotropic") > 0, sitk.sitkUInt8)
    label.SetOrigin((0.0, 0.0, 0.0))
    sitk.WriteImage(label, str(label_path))
    with pytest.raises(GeometryMismatchError) as exc:
        read_label_for(read_volume(image_path), label_path)
    assert "origin image (-120.5, 33.25, 7) vs label map (0, 0, 0) mm" in one_line(exc)


def test_write_to_missing_folder(tmp_path):
    volume = read_volume(_write(make_image(), tmp_path / "ct.mha"))
    with pytest.raises(WriteError, match="does not exist"):
        write_volume(volume, tmp_path / "no" / "such" / "labels.nii.gz")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_write_to_read_only_folder_changes_nothing(tmp_path):
    volume = read_volume(_write(make_image(), tmp_path / "ct.mha"))
    folder = tmp_path / "locked"
    folder.mkdir()
    existing = folder / "labels.nii.gz"
    existing.write_bytes(b"old contents")
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root without CAP_DAC_OVERRIDE limits)")
        before = volume.array.copy()
        with pytest.raises(WriteError, match="cannot write"):
            write_volume(volume, existing)
        assert existing.read_bytes() == b"old contents"
        np.testing.assert_array_equal(volume.array, before)
    finally:
        folder.chmod(0o700)


def test_write_refused_by_permissions_reports_and_changes_nothing(tmp_path, monkeypatch):
    """The read-only case as root sees it: the OS refuses the temporary file."""
    import tempfile

    volume = read_volume(_write(make_image(), tmp_path / "ct.mha"))
    target = tmp_path / "labels.nii.gz"
    target.write_bytes(b"old contents")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(WriteError, match="Permission denied"):
        write_volume(volume, target)
    assert target.read_bytes() == b"old contents"


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    volume = read_volume(_write(make_image(), tmp_path / "ct.mha"))
    target = tmp_path / "labels.nrrd"
    target.write_bytes(b"previous version")

    def broken_write(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", broken_write)
    with pytest.raises(WriteError, match="disk full"):
        write_volume(volume, target)
    assert target.read_bytes() == b"previous version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.mha", "labels.nrrd"]


def test_unsupported_write_extension(tmp_path):
    volume = read_volume(_write(make_image(), tmp_path / "ct.mha"))
    with pytest.raises(UnsupportedFormatError, match=".nii.gz"):
        write_volume(volume, tmp_path / "labels.png")


def test_all_errors_are_medvision_errors():
    for cls in (UnreadableFileError, UnsupportedFormatError, GeometryMismatchError, WriteError, FourDimensionalError):
        assert issubclass(cls, MedvisionError)


def _write(image, path):
    sitk.WriteImage(image, str(path))
    return path
