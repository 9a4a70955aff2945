"""DICOM results (SEG) as napari layers: a labels layer on its source series, names and colours kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.dicom.locate import dicom_modality, result_files
from ..core.errors import MedvisionError
from .layers import image_layer_data, labels_layer_data, layer_volume

#: What a layer read from a DICOM result remembers: the referenced series (for "Send to PACS").
SOURCE_SERIES_KEY = "dicom_series_uid"


RESULT_KINDS = ("SEG", "RTSTRUCT")


def is_dicom_result(path: Path) -> bool:
    """A DICOM-SEG or RTSTRUCT file (judged from its header only)."""
    return path.is_file() and dicom_modality(path) in RESULT_KINDS


def folder_results(folder: Path) -> list[Path]:
    """The SEG and RTSTRUCT files directly in a series folder."""
    return [p for kind in RESULT_KINDS for p in result_files(folder, kind)] if folder.is_dir() else []


def seg_layer_data(path: Path, source_folder: Path | None = None) -> tuple:
    """``(data, kwargs, "labels")`` for a SEG or RTSTRUCT file, on its source series' grid."""
    if dicom_modality(path) == "RTSTRUCT":
        from ..core.dicom.rtstruct import read_rtstruct

        return segmentation_layer_data(read_rtstruct(path, source_folder), path.stem)
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


def layer_source_folder(layer, image_layers=()) -> Path:
    """The DICOM series folder behind a labels layer: its own source, else an image layer's on its grid.

    Raises:
        MedvisionError: no DICOM series folder is known for the layer.
    """
    candidates = [layer.metadata.get("source")]
    shape = tuple(np.shape(layer.data))
    candidates += [image.metadata.get("source") for image in image_layers if tuple(np.shape(image.data)) == shape]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    raise MedvisionError(f"the labels layer '{layer.name}' is not on a study opened from a DICOM series folder: "
                         "a DICOM-SEG must reference the series it was drawn on (open the series, then run or draw)")


def layer_to_seg(layer, output: Path, source_folder: Path, data=None) -> Path:
    """Write a labels layer (or ``data``, a copy of its array) as a DICOM-SEG on the series in ``source_folder``.

    The segments are AUTOMATIC (with the model's name) when the layer still equals the model's
    output, MANUAL once it was edited or drawn by hand.
    """
    from ..core.dicom.seg import Algorithm, write_dicom_seg
    from ..core.dicom.source import read_source_series
    from .results import MODEL_OUTPUT_KEY

    source = read_source_series(source_folder, layer.metadata.get(SOURCE_SERIES_KEY))
    label = layer_volume(layer)
    if data is not None:
        label = label.with_array(np.asarray(data))
    values = [int(v) for v in np.unique(label.array) if v > 0]
    names = {int(k): v for k, v in (layer.metadata.get("label_names") or {}).items()}
    colors = {v: tuple(float(c) for c in layer.get_color(v)[:3]) for v in values}
    model_output, model = layer.metadata.get(MODEL_OUTPUT_KEY), layer.metadata.get("model")
    edited = model_output is None or not np.array_equal(np.asarray(model_output), label.array)
    algorithm = None if edited or not model else Algorithm(str(model))
    return write_dicom_seg(label, source, output, names, colors=colors, algorithm=algorithm,
                           description=f"{layer.name}"[:64])


def pacs_series_layers(client, record):
    """Generator: retrieve a series a PACS search found (cached) and return its layer data.

    An image series gives its image layer and the results stored beside it; a SEG or RTSTRUCT
    series also retrieves the series it refers to, so its labels open on their images. Yields
    ``(received, expected)`` per instance retrieved.
    """
    from ..core.dicom.locate import referenced_series_uid
    from ..core.dicom.pacs_cache import iter_cached_series
    from ..core.io import read_volume

    folder = yield from iter_cached_series(client, record.series_uid)
    if record.modality not in RESULT_KINDS:
        volume = read_volume(folder, series_uid=record.series_uid)
        return [image_layer_data(volume, record.description or record.modality)] + [
            seg_layer_data(path, folder) for path in folder_results(folder)]
    layers = []
    for path in folder_results(folder):
        source_uid = referenced_series_uid(path)
        source = yield from iter_cached_series(client, source_uid)
        image = read_volume(source, series_uid=source_uid)
        layers += [image_layer_data(image, image.metadata.get("series_description") or "image"),
                   seg_layer_data(path, source)]
    return layers
