import numpy as np
import pydicom
import pytest

from napari_medvision.core.errors import UnreadableFileError
from napari_medvision.core.io import list_dicom_series, read_volume, volume_info
from tests.conftest import write_dicom_series


def ramp(n_slices=6):
    """HU values whose slice index is readable from the value: slice k is -900 + 100 k."""
    return np.stack([np.full((8, 10), -900 + 100 * k, np.int16) for k in range(n_slices)])


def test_ct_series_is_in_hounsfield_units(tmp_path):
    paths = write_dicom_series(tmp_path, ramp())
    stored = pydicom.dcmread(paths[0]).pixel_array
    assert stored.min() == -900 + 1024, "the file stores raw values; rescale must be applied on reading"
    volume = read_volume(tmp_path)
    assert volume.modality == "CT"
    assert volume.array.min() == -900 and volume.array.max() == -400
    assert volume.metadata["series_description"] == "Chest CT"


def test_slices_sorted_by_position_not_file_name(tmp_path):
    names = [f"IM{n}.dcm" for n in (5, 3, 9, 1, 7, 2)]  # name order unrelated to position
    write_dicom_series(tmp_path, ramp(), file_names=names)
    volume = read_volume(tmp_path)
    np.testing.assert_array_equal(volume.array[:, 0, 0], [-900, -800, -700, -600, -500, -400])
    assert volume.spacing == pytest.approx((0.7, 0.7, 2.5))
    assert volume.origin == pytest.approx((-100.0, -120.0, 0.0))
    assert not volume.warnings


def test_mixed_series_default_largest_and_each_choosable(tmp_path):
    write_dicom_series(tmp_path, ramp(6), series_uid="1.2.3.100", description="Thorax 2.5mm")
    write_dicom_series(tmp_path, ramp(3), series_uid="1.2.3.200", description="Scout",
                       file_names=["s1.dcm", "s2.dcm", "s3.dcm"])
    series = list_dicom_series(tmp_path)
    assert [(s.uid, s.n_slices, s.description, s.modality) for s in series] == [
        ("1.2.3.100", 6, "Thorax 2.5mm", "CT"), ("1.2.3.200", 3, "Scout", "CT")]
    assert series[0].label() == "Thorax 2.5mm — CT — 6 slices"
    default = read_volume(tmp_path)
    assert default.shape[0] == 6
    assert any("2 series" in w for w in default.warnings)
    assert read_volume(tmp_path, series_uid="1.2.3.200").shape[0] == 3
    with pytest.raises(UnreadableFileError, match="1.2.3.999"):
        read_volume(tmp_path, series_uid="1.2.3.999")


def test_single_dicom_file_without_extension(tmp_path):
    paths = write_dicom_series(tmp_path / "series", ramp(2), modality="MR")
    single = tmp_path / "IMG0001"
    single.write_bytes(paths[1].read_bytes())
    volume = read_volume(single)
    assert volume.shape == (1, 8, 10)
    assert volume.modality == "MR"
    info = volume_info(volume)
    assert info["modality"] == "MR"
