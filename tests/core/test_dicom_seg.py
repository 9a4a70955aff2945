"""DICOM-SEG out and in: highdicom objects on their source series, validated by dciodvfy."""

from __future__ import annotations

import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest

from napari_medvision.core.dicom.codes import segment_codes
from napari_medvision.core.dicom.seg import Algorithm, read_dicom_seg, write_dicom_seg
from napari_medvision.core.dicom.source import DicomReferenceError, read_source_series
from napari_medvision.core.errors import GeometryMismatchError, UnreadableFileError
from napari_medvision.core.io import read_volume
from tests.dicom_series import volume_to_ct_series, write_ct_series


def dciodvfy_errors(path) -> list[str]:
    """The ``Error`` lines dciodvfy reports for ``path`` (skips when dicom3tools is not installed)."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (Debian dicom3tools; scripts/setup_pacs.sh)")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def ct_series(folder, direction=np.diag([1.0, -1.0, 1.0]), **kwargs):
    """Six 16x20 slices, files named out of slice order."""
    hu = np.full((6, 16, 20), -1000, np.int16)
    names = [f"CT{n}.dcm" for n in (3, 1, 5, 2, 6, 4)]
    write_ct_series(folder, hu, direction=direction, file_names=names, **kwargs)
    return folder


def two_organs(source):
    label = np.zeros(source.volume.shape, np.uint8)
    label[1:4, 3:8, 4:9] = 1
    label[2:5, 10:14, 10:15] = 3
    return source.volume.with_array(label)


def test_seg_references_each_slice_instance_by_position(tmp_path):
    source = read_source_series(ct_series(tmp_path / "ct"))
    label = two_organs(source)
    out = write_dicom_seg(label, source, tmp_path / "seg.dcm", {1: "spleen", 3: "liver lesion"},
                          colors={1: "#8e5fbf", 3: (0.2, 0.9, 0.2)}, algorithm=Algorithm("ct_organs_unet", "1.0.0"))
    assert dciodvfy_errors(out) == []
    seg = hd.seg.segread(out)
    assert seg.SegmentationType == "BINARY"
    assert [seg.get_segment_description(n).segment_label for n in (1, 2)] == ["spleen", "liver lesion"]
    spleen = seg.get_segment_description(1)
    assert spleen.segmented_property_type.value == "78961009"
    assert seg.get_segment_description(2).segmented_property_category.value == "49755003"
    assert spleen.algorithm_type.value == "AUTOMATIC"
    assert spleen.algorithm_identification[0].AlgorithmName == "ct_organs_unet"
    assert spleen.algorithm_identification[0].AlgorithmVersion == "1.0.0"
    rgb = hd.color.CIELabColor.from_dicom_value(spleen.RecommendedDisplayCIELabValue).to_rgb(clip=True)
    assert np.allclose(rgb, (0x8E, 0x5F, 0xBF), atol=2)
    by_uid = {str(pydicom.dcmread(p).SOPInstanceUID): pydicom.dcmread(p) for p in (tmp_path / "ct").iterdir()}
    for index, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        number = frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        position = np.array(frame.PlanePositionSequence[0].ImagePositionPatient, float)
        assert np.allclose(position, np.array(by_uid[uid].ImagePositionPatient, float), atol=1e-4)
        k = int(round(source.volume.world_to_index(position)[2]))
        expected = label.array[k] == (1 if number == 1 else 3)
        np.testing.assert_array_equal(seg.pixel_array[index].astype(bool), expected)


def test_seg_round_trip_gives_labels_on_the_source_grid(tmp_path):
    source = read_source_series(ct_series(tmp_path / "ct"))
    label = two_organs(source)
    write_dicom_seg(label, source, tmp_path / "ct" / "result.dcm", {1: "spleen", 3: "lesion"}, colors={1: "#ff0000"})
    back = read_dicom_seg(tmp_path / "ct" / "result.dcm")
    assert back.names == {1: "spleen", 2: "lesion"}
    assert np.allclose(back.colors[1], (1.0, 0.0, 0.0), atol=0.01)
    expected = np.select([label.array == 1, label.array == 3], [1, 2], 0)
    np.testing.assert_array_equal(back.labels.array, expected)
    assert back.labels.spacing == source.volume.spacing and back.labels.origin == source.volume.origin
    np.testing.assert_array_equal(back.labels.direction, source.volume.direction)
    # The SEG beside its series is no image series of its own: the folder still reads as the CT alone.
    assert read_volume(tmp_path / "ct").warnings == []


def test_edited_labels_are_manual(tmp_path):
    source = read_source_series(ct_series(tmp_path / "ct"))
    out = write_dicom_seg(two_organs(source), source, tmp_path / "seg.dcm", {1: "liver"})
    seg = hd.seg.segread(out)
    assert {seg.get_segment_description(n).algorithm_type.value for n in (1, 2)} == {"MANUAL"}
    assert seg.get_segment_description(2).segment_label == "label 3"
    assert dciodvfy_errors(out) == []


def test_label_off_the_series_grid_is_refused_and_nothing_written(tmp_path):
    source = read_source_series(ct_series(tmp_path / "ct"))
    label = two_organs(source)
    label.spacing = (0.7, 0.7, 3.0)
    with pytest.raises(GeometryMismatchError, match="spacing"):
        write_dicom_seg(label, source, tmp_path / "seg.dcm", {1: "liver"})
    assert list(tmp_path.glob("*seg*")) == []


def test_anonymised_series_with_empty_uids_is_refused(tmp_path):
    ct_series(tmp_path / "ct", empty_uids=True)
    with pytest.raises(DicomReferenceError, match="empty SOPInstanceUID"):
        read_source_series(tmp_path / "ct")


def test_series_mixing_orientations_is_refused(tmp_path):
    folder = ct_series(tmp_path / "ct")
    odd = pydicom.dcmread(folder / "CT6.dcm")
    odd.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    odd.save_as(folder / "CT6.dcm")
    with pytest.raises(DicomReferenceError, match="orientations"):
        read_source_series(folder)


def test_seg_without_its_series_says_where_to_put_it(tmp_path):
    source = read_source_series(ct_series(tmp_path / "ct"))
    (tmp_path / "alone").mkdir()
    out = write_dicom_seg(two_organs(source), source, tmp_path / "alone" / "seg.dcm", {1: "liver"})
    shutil.rmtree(tmp_path / "ct")
    with pytest.raises(UnreadableFileError, match="source series"):
        read_dicom_seg(out)


def test_real_prostate_labels_round_trip_through_seg(tmp_path, shared_data):
    """A real scan (x and y flipped, 3 mm slices, labels 0..9) as a CT series, its label map as a SEG."""
    folder = shared_data / "pyradiomics"
    image = read_volume(folder / "prostate_phantom_subvolume.nrrd")
    label = read_volume(folder / "prostate_phantom_subvolume-label.nrrd")
    volume_to_ct_series(image, tmp_path / "ct")
    source = read_source_series(tmp_path / "ct")
    on_grid = source.volume.with_array(label.array.astype(np.int32))
    out = write_dicom_seg(on_grid, source, tmp_path / "ct" / "seg.dcm", {})
    assert dciodvfy_errors(out) == []
    back = read_dicom_seg(out)
    values = [v for v in np.unique(label.array) if v > 0]
    remap = np.zeros(int(label.array.max()) + 1, np.int32)
    remap[values] = np.arange(1, len(values) + 1)
    np.testing.assert_array_equal(back.labels.array, remap[label.array])
    assert np.allclose(back.labels.origin, image.origin, atol=1e-4)
    assert np.allclose(back.labels.direction, image.direction, atol=1e-6)


@pytest.mark.parametrize("name, category, code", [
    ("spleen", "91723000", "78961009"), ("Kidney_Left", "91723000", "18639004"), ("right lung", "91723000", "3341006"),
    ("liver lesion", "49755003", "52988006"), ("tumour", "49755003", "108369006"), ("lung nodule", "49755003",
                                                                                     "27925004"),
    ("something else", "85756007", "85756007"),
])
def test_segment_codes(name, category, code):
    got_category, got_type = segment_codes(name)
    assert (got_category.value, got_type.value) == (category, code)


def test_seg_without_per_frame_source_references_is_placed_by_position(tmp_path):
    """A SEG from a tool that names no source image per frame: its plane positions place the frames."""
    source = read_source_series(ct_series(tmp_path / "ct"))
    label = two_organs(source)
    out = write_dicom_seg(label, source, tmp_path / "ct" / "seg.dcm", {1: "spleen", 3: "liver"})
    seg = pydicom.dcmread(out)
    order = np.random.default_rng(0).permutation(len(seg.PerFrameFunctionalGroupsSequence))
    frames = seg.pixel_array
    for item in seg.PerFrameFunctionalGroupsSequence:
        del item.DerivationImageSequence
    seg.PerFrameFunctionalGroupsSequence = [seg.PerFrameFunctionalGroupsSequence[i] for i in order]
    seg.PixelData = pydicom.pixels.pack_bits(frames[order].astype(np.uint8))
    seg.save_as(out)
    back = read_dicom_seg(out)
    np.testing.assert_array_equal(back.labels.array, np.select([label.array == 1, label.array == 3], [1, 2], 0))
