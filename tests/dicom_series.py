"""Realistic DICOM CT series written with pydicom, for the DICOM-SEG / RTSTRUCT / PACS tests.

Every file carries the Patient, Study, Series, Frame of Reference, Equipment and Image modules a
scanner writes, so highdicom and dciodvfy see what they would see on a real study.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

ROOT = "1.2.826.0.1.3680043.8.498."


def write_ct_series(folder: Path, hu: np.ndarray, *, spacing=(0.7, 0.7, 2.5), origin=(-100.0, -120.0, 0.0),
                    direction=np.eye(3), patient_id="MV-0001", patient_name="Phantom^Chest",
                    study_uid: str | None = None, series_uid: str | None = None, description="Chest CT",
                    file_names=None, empty_uids: bool = False, seed: int = 0) -> list[Path]:
    """Write ``hu`` (z, y, x, Hounsfield units) as one CT file per slice.

    Args:
        spacing: ``(x, y, z)`` mm; z is the distance between slice positions.
        origin: LPS mm of voxel (0, 0, 0).
        direction: 3x3, columns are the x, y, z index axes (ITK convention).
        file_names: names in slice order (default ``IM0001.dcm``...), to scramble the name order.
        empty_uids: write empty SOP Instance UIDs, as some anonymisers do.

    Returns:
        The written paths, slice 0 first.
    """
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid(ROOT, entropy_srcs=[patient_id, str(seed), "study"])
    series_uid = series_uid or generate_uid(ROOT, entropy_srcs=[study_uid, description, str(seed)])
    frame_uid = generate_uid(ROOT, entropy_srcs=[series_uid, "frame"])
    direction = np.asarray(direction, float)
    paths = []
    for k in range(hu.shape[0]):
        position = np.asarray(origin) + k * spacing[2] * direction[:, 2]
        ds = _slice_dataset(hu[k], k, position, direction, spacing)
        ds.PatientID, ds.PatientName = patient_id, patient_name
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.SOPInstanceUID = "" if empty_uids else generate_uid(ROOT, entropy_srcs=[series_uid, str(k)])
        ds.SeriesDescription = description
        ds.file_meta = _file_meta(ds.SOPInstanceUID)
        ds.preamble = b"\0" * 128
        path = folder / (file_names[k] if file_names else f"IM{k + 1:04d}.dcm")
        ds.save_as(path, enforce_file_format=not empty_uids)
        paths.append(path)
    return paths


def _file_meta(sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _slice_dataset(hu: np.ndarray, k: int, position, direction, spacing) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "101010", "1", "ACC0001"
    ds.ReferringPhysicianName = "Referrer^Doctor"
    ds.StudyDescription = "CT Thorax"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 3, k + 1
    ds.SeriesDate, ds.SeriesTime = "20260101", "101500"
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition, ds.BodyPartExamined, ds.Laterality = "HFS", "CHEST", ""
    ds.Manufacturer, ds.ManufacturerModelName = "Phantom Scanners", "Test CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.AcquisitionNumber, ds.KVP = 1, "120"
    ds.ContentDate, ds.ContentTime = "20260101", "101500"
    ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*direction[:, 0], *direction[:, 1])]
    ds.PixelSpacing = [f"{spacing[1]:g}", f"{spacing[0]:g}"]  # row spacing (y), column spacing (x)
    ds.SliceThickness = f"{spacing[2]:g}"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = hu.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    ds.PixelData = (np.asarray(hu, np.int32) + 1024).astype("<i2").tobytes()
    return ds


def volume_to_ct_series(volume, folder: Path, **kwargs) -> list[Path]:
    """A :class:`~napari_medvision.core.volume.Volume` (e.g. a real NRRD scan) as a CT series on its grid."""
    hu = np.clip(np.asarray(volume.array, np.float64), -1024, 31000).round().astype(np.int16)
    return write_ct_series(folder, hu, spacing=volume.spacing, origin=volume.origin, direction=volume.direction,
                           **kwargs)


def read(path) -> Dataset:
    return pydicom.dcmread(path)


def compress_jpeg2000(paths) -> None:
    """Re-encode each file's pixels as lossless JPEG 2000 (GDCM through SimpleITK), in place."""
    import tempfile

    import SimpleITK as sitk

    for path in paths:
        ds = pydicom.dcmread(path)
        image = sitk.GetImageFromArray(ds.pixel_array[np.newaxis].astype(np.int16))
        with tempfile.TemporaryDirectory() as temp:
            writer = sitk.ImageFileWriter()
            writer.SetFileName(f"{temp}/j2k.dcm")
            writer.SetImageIO("GDCMImageIO")
            writer.SetCompressor("JPEG2000")
            writer.SetUseCompression(True)
            writer.Execute(image)
            encoded = pydicom.dcmread(f"{temp}/j2k.dcm")
        ds.PixelData = encoded.PixelData
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = encoded.file_meta.TransferSyntaxUID
        ds.save_as(path, enforce_file_format=True)
