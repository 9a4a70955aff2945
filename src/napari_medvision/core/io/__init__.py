"""Reading and writing volumes: files, DICOM series, clear errors, atomic writes."""

from .dicom import DicomSeries, list_dicom_series, read_dicom_series
from .reader import READ_EXTENSIONS, read_label_for, read_volume, volume_info
from .writer import WRITE_EXTENSIONS, check_destination, write_volume

__all__ = [
    "DicomSeries",
    "READ_EXTENSIONS",
    "WRITE_EXTENSIONS",
    "check_destination",
    "list_dicom_series",
    "read_dicom_series",
    "read_label_for",
    "read_volume",
    "volume_info",
    "write_volume",
]
