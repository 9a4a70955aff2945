"""DICOM radiographs (CR, DX, MG; multi-frame; for presentation / processing), built with pydicom."""

from __future__ import annotations

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from napari_medvision.core.io import read_volume, volume_info  # noqa: E402
from napari_medvision._napari.layers import image_layer_data  # noqa: E402

_SOP_CLASS = {"DX": "1.2.840.10008.5.1.4.1.1.1.1", "CR": "1.2.840.10008.5.1.4.1.1.1",
              "MG": "1.2.840.10008.5.1.4.1.1.1.2"}


def write_radiograph(path, pixels, *, modality="DX", photometric="MONOCHROME2", pixel_spacing=None,
                     imager_spacing=None, slope=None, intercept=None, window=None, voi_lut=None,
                     intent="FOR PRESENTATION", frame_gap=None):
    """A minimal valid radiograph file; ``pixels`` (rows, cols) or (frames, rows, cols), 12 bits stored."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _SOP_CLASS[modality]
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientName, ds.PatientID = modality, "Phantom^Radiograph", "R1"
    ds.PresentationIntentType = intent
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if pixel_spacing:
        ds.PixelSpacing = list(pixel_spacing)
    if imager_spacing:
        ds.ImagerPixelSpacing = list(imager_spacing)
    if frame_gap:
        ds.SpacingBetweenSlices = frame_gap
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "US"
    if window:
        ds.WindowWidth, ds.WindowCenter = window
    if voi_lut:
        item = Dataset()
        item.LUTDescriptor = list(voi_lut)
        item.LUTData = np.arange(voi_lut[0], dtype=np.uint16).tobytes()
        ds.VOILUTSequence = Sequence([item])
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _pixels(shape=(20, 30)):
    return (np.arange(np.prod(shape)).reshape(shape) * 7) % 4000


@pytest.mark.parametrize("modality", ["CR", "DX", "MG"])
def test_pixel_spacing_wins_over_imager_pixel_spacing(tmp_path, modality):
    path = write_radiograph(tmp_path / "film.dcm", _pixels(), modality=modality,
                            pixel_spacing=(0.2, 0.25), imager_spacing=(0.14, 0.15))
    volume = read_volume(path)
    assert volume.spacing[:2] == (0.25, 0.2)   # x = columns, y = rows
    assert volume.metadata["spacing_source"] == "PixelSpacing"
    assert volume.modality == modality
    assert not any("Imager" in w for w in volume.warnings)
    info = volume_info(volume)
    assert info["shape"] == [20, 30] and info["spacing"] == [0.25, 0.2]


def test_imager_pixel_spacing_is_used_with_a_note(tmp_path):
    volume = read_volume(write_radiograph(tmp_path / "dx.dcm", _pixels(), imager_spacing=(0.14, 0.15)))
    assert volume.spacing[:2] == (0.15, 0.14)
    assert volume.metadata["spacing_source"] == "ImagerPixelSpacing"
    assert any("Imager Pixel Spacing" in w and "magnification" in w for w in volume.warnings)


def test_rescale_applies_and_monochrome1_is_shown_inverted_not_changed(tmp_path):
    stored = _pixels()
    path = write_radiograph(tmp_path / "cr.dcm", stored, modality="CR", photometric="MONOCHROME1",
                            pixel_spacing=(0.1, 0.1), slope=2.0, intercept=-100.0, window=(2000.0, 1000.0))
    volume = read_volume(path)
    np.testing.assert_allclose(volume.array[0], stored * 2.0 - 100.0)
    data, kwargs, _ = image_layer_data(volume, "cr")
    assert kwargs["colormap"] == "gray_r"                 # bone (low values in MONOCHROME1) shows white
    assert kwargs["contrast_limits"] == [0.0, 2000.0]     # the file's window: level 1000, width 2000
    assert kwargs["metadata"]["window"] == [2000.0, 1000.0]


def test_monochrome2_is_shown_plainly_with_its_window(tmp_path):
    volume = read_volume(write_radiograph(tmp_path / "dx.dcm", _pixels(), pixel_spacing=(0.1, 0.1),
                                          window=(400.0, 300.0)))
    _, kwargs, _ = image_layer_data(volume, "dx")
    assert kwargs["colormap"] == "gray" and kwargs["contrast_limits"] == [100.0, 500.0]


def test_voi_lut_range_is_the_default_window(tmp_path):
    volume = read_volume(write_radiograph(tmp_path / "mg.dcm", _pixels(), modality="MG", pixel_spacing=(0.07, 0.07),
                                          voi_lut=(1024, 500, 12)))
    assert volume.metadata["window"] == [1024.0, 500 + 1023 / 2]
    _, kwargs, _ = image_layer_data(volume, "mg")
    assert kwargs["contrast_limits"] == [500 - 0.5, 500 + 1023.5]


def test_multi_frame_radiograph_is_a_stack_of_frames_with_its_spacing(tmp_path):
    frames = np.stack([_pixels() + k for k in range(3)])
    volume = read_volume(write_radiograph(tmp_path / "rf.dcm", frames, pixel_spacing=(0.3, 0.3), frame_gap=2.0))
    assert volume.shape == (3, 20, 30)
    assert volume.spacing == (0.3, 0.3, 2.0)
    np.testing.assert_array_equal(volume.array, frames)


def test_for_processing_image_is_read_with_a_warning(tmp_path):
    volume = read_volume(write_radiograph(tmp_path / "raw.dcm", _pixels(), pixel_spacing=(0.1, 0.1),
                                          intent="FOR PROCESSING"))
    assert volume.metadata["presentation_intent"] == "FOR PROCESSING"
    assert any("for processing" in w for w in volume.warnings)


def test_radiograph_in_a_folder_reads_the_same(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    write_radiograph(folder / "IM0001", _pixels(), modality="CR", pixel_spacing=(0.2, 0.25))
    volume = read_volume(folder)
    assert volume.spacing[:2] == (0.25, 0.2) and volume.shape == (1, 20, 30)
    assert volume.metadata["dimension"] == 2
