"""RT Structure Sets: a label map out as closed planar contours on its source series, and back by rasterising.

highdicom has no RTSTRUCT writer, so the dataset is built here with pydicom, every Type 1 and
Type 2 attribute of the RT Structure Set IOD filled (rt-utils leaves some empty). Contours are
traced per slice at the 0.5 iso-line of each label's mask (``skimage.measure.find_contours``)
and stored in LPS millimetres; reading fills each contour's polygon on the slice its referenced
instance lies on, combining a label's contours even-odd so that holes stay holes.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, RTStructureSetStorage, generate_uid
from skimage.draw import polygon as fill_polygon
from skimage.measure import find_contours

from ... import __version__
from ..errors import MedvisionError, UnreadableFileError
from ..volume import Volume
from ._files import write_dataset_atomic
from .colors import rgb_of
from .seg import MANUFACTURER, Algorithm, SegmentationLabels
from .source import DicomReferenceError, SourceSeries

_FINDING_WORDS = ("tumour", "tumor", "lesion", "nodule", "mass", "cancer", "metastasis", "neoplasm")
#: Detached Study Management SOP class: what RTReferencedStudySequence conventionally names.
_STUDY_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"
_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                  "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription")


def slice_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Closed contours ``(n, 2)`` in (row, column) voxel indices around the ``True`` pixels of a 2D mask."""
    padded = np.pad(mask.astype(np.float32), 1)
    return [contour[:-1] - 1.0 for contour in find_contours(padded, 0.5) if len(contour) > 3]


def build_rtstruct(label: Volume, source: SourceSeries, names: dict[int, str], *, colors: dict | None = None,
                   algorithm: Algorithm | None = None, label_text: str = "medvision") -> Dataset:
    """An RT Structure Set with one ROI per label value present, contours per slice in LPS mm.

    Raises:
        GeometryMismatchError: ``label`` is not on the series' grid.
        MedvisionError: the label map holds no label.
    """
    source.check_label(label)
    values = [int(v) for v in np.unique(label.array) if v > 0]
    if not values:
        raise MedvisionError("the label map is empty (no voxel above 0): there is nothing to write as RTSTRUCT")
    ds = _header(source, label_text)
    frame_uid = str(source.datasets[0].FrameOfReferenceUID)
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = Sequence(), Sequence(), \
        Sequence()
    for number, value in enumerate(values, start=1):
        name = names.get(value, f"label {value}")
        ds.StructureSetROISequence.append(_roi(number, name, frame_uid, algorithm))
        ds.ROIContourSequence.append(_roi_contours(number, label, value, source, (colors or {}).get(value)))
        ds.RTROIObservationsSequence.append(_observation(number, name))
    return ds


def write_rtstruct(label: Volume, source: SourceSeries, output: str | Path, names: dict[int, str],
                   **options) -> Path:
    """Write :func:`build_rtstruct`'s structure set to ``output`` atomically; returns the path."""
    return write_dataset_atomic(build_rtstruct(label, source, names, **options), output)


def _header(source: SourceSeries, label_text: str) -> Dataset:
    first = source.datasets[0]
    now = datetime.datetime.now()
    ds = Dataset()
    ds.SpecificCharacterSet = first.get("SpecificCharacterSet", "ISO_IR 100")
    ds.SOPClassUID, ds.SOPInstanceUID = RTStructureSetStorage, generate_uid()
    for keyword in _PATIENT_STUDY:
        setattr(ds, keyword, first.get(keyword, ""))
    ds.Modality, ds.SeriesInstanceUID = "RTSTRUCT", generate_uid()
    ds.FrameOfReferenceUID = str(first.FrameOfReferenceUID)
    ds.PositionReferenceIndicator = first.get("PositionReferenceIndicator", "")
    ds.SeriesNumber, ds.InstanceNumber, ds.OperatorsName = int(first.get("SeriesNumber") or 0) + 2000, 1, ""
    ds.SeriesDescription = "Structure set"
    ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions = MANUFACTURER, "medvision", __version__
    ds.StructureSetLabel, ds.StructureSetName = label_text[:16], label_text[:64]
    ds.StructureSetDate, ds.StructureSetTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = ds.StructureSetDate, ds.StructureSetTime
    images = Sequence([_image_ref(item) for item in source.datasets])
    series = Dataset()
    series.SeriesInstanceUID, series.ContourImageSequence = str(first.SeriesInstanceUID), images
    study = Dataset()
    study.ReferencedSOPClassUID, study.ReferencedSOPInstanceUID = _STUDY_SOP_CLASS, str(first.StudyInstanceUID)
    study.RTReferencedSeriesSequence = Sequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID, frame.RTReferencedStudySequence = str(first.FrameOfReferenceUID), Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    ds.ApprovalStatus = "UNAPPROVED"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID, ds.file_meta.ImplementationClassUID = ExplicitVRLittleEndian, \
        PYDICOM_IMPLEMENTATION_UID
    ds.preamble = b"\0" * 128
    return ds


def _image_ref(image: Dataset) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = str(image.SOPClassUID), str(image.SOPInstanceUID)
    return ref


def _roi(number: int, name: str, frame_uid: str, algorithm: Algorithm | None) -> Dataset:
    roi = Dataset()
    roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = number, frame_uid, name[:64]
    roi.ROIGenerationAlgorithm = "AUTOMATIC" if algorithm else "MANUAL"
    if algorithm:
        roi.ROIGenerationDescription = f"{algorithm.name} {algorithm.version}"[:64]
    return roi


def _roi_contours(number: int, label: Volume, value: int, source: SourceSeries, color) -> Dataset:
    item = Dataset()
    item.ReferencedROINumber = number
    if color is not None:
        item.ROIDisplayColor = [round(255 * c) for c in rgb_of(color)]
    item.ContourSequence = Sequence()
    for k in range(label.shape[0]):
        for contour in slice_contours(label.array[k] == value):
            index_xyz = np.column_stack([contour[:, 1], contour[:, 0], np.full(len(contour), float(k))])
            world = label.index_to_world(index_xyz)
            entry = Dataset()
            entry.ContourImageSequence = Sequence([_image_ref(source.datasets[k])])
            entry.ContourGeometricType, entry.NumberOfContourPoints = "CLOSED_PLANAR", len(world)
            entry.ContourData = [f"{v:.4f}" for v in world.ravel()]
            entry.ContourNumber = len(item.ContourSequence) + 1
            item.ContourSequence.append(entry)
    return item


def _observation(number: int, name: str) -> Dataset:
    observation = Dataset()
    observation.ObservationNumber, observation.ReferencedROINumber = number, number
    finding = any(word in name.lower() for word in _FINDING_WORDS)
    observation.RTROIInterpretedType, observation.ROIInterpreter = ("GTV" if finding else "ORGAN"), ""
    return observation


def read_rtstruct(path: str | Path, source_folder: str | Path | None = None) -> SegmentationLabels:
    """Rasterise an RTSTRUCT onto its source series: ROI ``n`` (in file order) becomes label ``n``.

    Raises:
        UnreadableFileError: not an RTSTRUCT, or its source series is not found.
        DicomReferenceError: a contour lies off the series' slices.
    """
    from .locate import find_series_folder
    from .source import read_source_series

    path = Path(path)
    ds = _read(path)
    series_uid = str(ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
                     .RTReferencedSeriesSequence[0].SeriesInstanceUID)
    folder = Path(source_folder) if source_folder else find_series_folder(series_uid, near=path)
    source = read_source_series(folder, series_uid)
    volume, slices = source.volume, {uid: k for k, uid in enumerate(source.sop_instance_uids)}
    labels = np.zeros(volume.shape, np.uint16)
    rois = {int(roi.ROINumber): str(roi.ROIName) for roi in ds.StructureSetROISequence}
    names, colors = {}, {}
    for value, item in enumerate(ds.ROIContourSequence, start=1):
        names[value] = rois.get(int(item.ReferencedROINumber), f"ROI {item.ReferencedROINumber}")
        if "ROIDisplayColor" in item:
            colors[value] = tuple(int(c) / 255.0 for c in item.ROIDisplayColor)
        mask = np.zeros(volume.shape, bool)
        for contour in item.get("ContourSequence", []):
            _fill(mask, contour, volume, slices)
        labels[mask & (labels == 0)] = value
    return SegmentationLabels(volume.with_array(labels, result_path=str(path)), names, colors,
                              series_uid)


def _read(path: Path) -> Dataset:
    try:
        ds = pydicom.dcmread(path)
    except (pydicom.errors.InvalidDicomError, OSError, ValueError) as exc:
        raise UnreadableFileError(f"'{path.name}' cannot be read as DICOM: {exc}") from None
    if str(ds.get("SOPClassUID", "")) != RTStructureSetStorage:
        raise UnreadableFileError(f"'{path.name}' is not an RT Structure Set")
    return ds


def _fill(mask: np.ndarray, contour: Dataset, volume: Volume, slices: dict[str, int]) -> None:
    """XOR the contour's polygon into its slice of ``mask`` (even-odd: inner contours cut holes)."""
    points = np.asarray(contour.ContourData, float).reshape(-1, 3)
    index = volume.world_to_index(points)
    k = int(round(float(np.mean(index[:, 2]))))
    refs = contour.get("ContourImageSequence") or []
    if refs and str(refs[0].ReferencedSOPInstanceUID) in slices:
        k = slices[str(refs[0].ReferencedSOPInstanceUID)]
    if not 0 <= k < mask.shape[0] or np.abs(index[:, 2] - k).max() > 0.25:
        raise DicomReferenceError(f"a contour lies off the slices of the series (at slice index "
                                  f"{float(np.mean(index[:, 2])):.2f}); the RTSTRUCT does not fit this series")
    rows, cols = fill_polygon(index[:, 1], index[:, 0], shape=mask.shape[1:])
    mask[k, rows, cols] ^= True
