"""DICOM results (SEG) as napari layers: a labels layer on its source series, names and colours kept."""

from __future__ import annotations

from pathlib import Path

from ..core.dicom.locate import dicom_modality, result_files
from .layers import labels_layer_data

#: What a layer read from a DICOM result remembers: the referenced series (for "Send to PACS").
SOURCE_SERIES_KEY = "dicom_series_uid"


def is_dicom_result(path: Path) -> bool:
    """A DICOM-SEG file (judged from its header only)."""
    return path.is_file() and dicom_modality(path) == "SEG"


def folder_results(folder: Path) -> list[Path]:
    """The SEG files directly in a series folder."""
    return result_files(folder, "SEG") if folder.is_dir() else []


def seg_layer_data(path: Path, source_folder: Path | None = None) -> tuple:
    """``(data, kwargs, "labels")`` for a SEG file, on its source series' grid."""
    from ..core.dicom.seg import read_dicom_seg  # highdicom loads only when a SEG is opened

    return segmentation_layer_data(read_dicom_seg(path, source_folder), path.stem)


def segmentation_layer_data(seg, name: str) -> tuple:
    """Layer data for a :class:`~..core.dicom.seg.SegmentationLabels`."""
    kwargs = {"opacity": 0.5}
    if seg.colors:
        from napari.utils.colormaps import DirectLabelColormap

        colors = {number: (*rgb, 1.0) for number, rgb in seg.colors.items()}
        kwargs["colormap"] = DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", **colors})
    data, layer_kwargs, kind = labels_layer_data(seg.labels, name, seg.names, **kwargs)
    layer_kwargs["metadata"][SOURCE_SERIES_KEY] = seg.series_uid
    return data, layer_kwargs, kind
