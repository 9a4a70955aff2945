"""RTSTRUCT out and in: contours in LPS mm on the source series, read back to the same mask."""

import numpy as np
import pydicom
import pytest

from napari_medvision.core.dicom.rtstruct import read_rtstruct, write_rtstruct
from napari_medvision.core.dicom.seg import Algorithm
from napari_medvision.core.dicom.source import read_source_series
from napari_medvision.core.errors import GeometryMismatchError
from napari_medvision.core.io import read_volume
from napari_medvision.core.metrics import dice
from tests.conftest import rotation
from tests.core.test_dicom_seg import ct_series, dciodvfy_errors
from tests.dicom_series import volume_to_ct_series


def shapes(volume):
    """A ring (a hole inside), a ball and a one-voxel-wide bar, on the volume's grid."""
    z, y, x = np.indices(volume.shape)
    label = np.zeros(volume.shape, np.uint8)
    r = np.hypot(y - 8, x - 9)
    label[(r <= 6) & (r >= 3) & (z >= 1) & (z <= 4)] = 2
    label[((z - 3) ** 2 + (y - 12) ** 2 / 4 + (x - 16) ** 2 / 4 <= 4)] = 5
    label[2, 1, 2:12] = 7
    return label


@pytest.mark.parametrize("direction", [np.diag([1.0, -1.0, 1.0]), rotation(0.2, -0.1, 0.3)],
                         ids=["flipped_y", "oblique"])
def test_rtstruct_round_trip_and_dciodvfy(tmp_path, direction):
    source = read_source_series(ct_series(tmp_path / "ct", direction=direction))
    label = shapes(source.volume)
    out = write_rtstruct(source.volume.with_array(label), source, tmp_path / "ct" / "rt.dcm",
                         {2: "liver", 5: "lesion", 7: "vessel"}, colors={2: "#ff8000"},
                         algorithm=Algorithm("ct_organs_unet", "1.0.0"))
    assert dciodvfy_errors(out) == []
    ds = pydicom.dcmread(out)
    assert [roi.ROIName for roi in ds.StructureSetROISequence] == ["liver", "lesion", "vessel"]
    assert ds.StructureSetROISequence[0].ROIGenerationAlgorithm == "AUTOMATIC"
    assert [o.RTROIInterpretedType for o in ds.RTROIObservationsSequence] == ["ORGAN", "GTV", "ORGAN"]
    assert list(ds.ROIContourSequence[0].ROIDisplayColor) == [255, 128, 0]
    back = read_rtstruct(out)
    assert back.names == {1: "liver", 2: "lesion", 3: "vessel"}
    for number, value in ((1, 2), (2, 5), (3, 7)):
        assert dice(back.labels.array == number, label == value) >= 0.98, (number, value)
    assert back.labels.origin == source.volume.origin


def test_rtstruct_of_a_real_scan_label(tmp_path, shared_data):
    """breast1's tumour (real MR, 2.1 mm slices) as RTSTRUCT, read back at Dice >= 0.98."""
    image = read_volume(shared_data / "pyradiomics" / "breast1_image.nrrd")
    label = read_volume(shared_data / "pyradiomics" / "breast1_label.nrrd")
    volume_to_ct_series(image, tmp_path / "ct")
    source = read_source_series(tmp_path / "ct")
    out = write_rtstruct(source.volume.with_array(label.array), source, tmp_path / "rt.dcm", {1: "tumour"})
    assert dciodvfy_errors(out) == []
    back = read_rtstruct(out, tmp_path / "ct")
    assert dice(back.labels.array == 1, label.array == 1) >= 0.98


def test_rtstruct_off_grid_label_is_refused(tmp_path):
    source = read_source_series(ct_series(tmp_path / "ct"))
    label = source.volume.with_array(shapes(source.volume))
    label.origin = (0.0, 0.0, 0.0)
    with pytest.raises(GeometryMismatchError, match="origin"):
        write_rtstruct(label, source, tmp_path / "rt.dcm", {})
    assert not (tmp_path / "rt.dcm").exists()
