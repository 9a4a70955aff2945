"""DICOM Segmentation (SEG) objects: a label map out to a SEG on its source series, and back.

Built with highdicom from typed arguments (segment descriptions with SNOMED CT codes, algorithm
identification), never from hand-assembled tags. One BINARY segment per label value present,
numbered 1..N in increasing label order; frames reference the source instance at their slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes

from ... import __version__
from ..errors import MedvisionError, UnreadableFileError
from ..volume import Volume
from ._files import write_dataset_atomic
from .codes import segment_codes
from .colors import rgb_of
from .source import DicomReferenceError, SourceSeries

MANUFACTURER = "napari-medvision"


@dataclass(frozen=True)
class Algorithm:
    """Who made an automatic result: a model name and version (``None``: edited by hand)."""

    name: str
    version: str = "unknown"


@dataclass
class SegmentationLabels:
    """A SEG read back: a label map on the source series' grid, with names and colours.

    Attributes:
        labels: segment numbers at the source grid, ``(z, y, x)``, geometry of the source series;
            ``metadata["path"]`` is the series folder, ``metadata["result_path"]`` the result file.
        names: segment number -> segment label.
        colors: segment number -> ``(r, g, b)`` in 0..1 (segments with a recommended colour only).
        series_uid: the referenced source series.
    """

    labels: Volume
    names: dict[int, str]
    colors: dict[int, tuple[float, float, float]]
    series_uid: str


def build_segmentation(label: Volume, source: SourceSeries, names: dict[int, str], *,
                       colors: dict | None = None, algorithm: Algorithm | None = None,
                       description: str = "Segmentation") -> hd.seg.Segmentation:
    """A highdicom Segmentation of ``label`` referencing ``source``'s instances.

    Args:
        label: integer label map ``(z, y, x)`` on the source series' grid.
        source: the referenced series (:func:`~.source.read_source_series`).
        names: label value -> name; values without a name are called ``label N``.
        colors: label value -> colour (``"#rrggbb"`` or RGB(A) floats 0..1); default: none recommended.
        algorithm: the model for an AUTOMATIC result; None marks the segments MANUAL (edited).

    Raises:
        GeometryMismatchError: ``label`` is not on the series' grid.
        MedvisionError: the label map holds no label.
    """
    source.check_label(label)
    values = [int(v) for v in np.unique(label.array) if v > 0]
    if not values:
        raise MedvisionError("the label map is empty (no voxel above 0): there is nothing to write as DICOM-SEG")
    segment_map = np.zeros(label.shape, np.uint16)
    for number, value in enumerate(values, start=1):
        segment_map[label.array == value] = number
    descriptions = [_description(number, names.get(value, f"label {value}"), (colors or {}).get(value), algorithm)
                    for number, value in enumerate(values, start=1)]
    return hd.seg.Segmentation(
        source_images=source.datasets,
        pixel_array=segment_map,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=_series_number(source),
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=algorithm.name if algorithm else "manual segmentation",
        software_versions=__version__,
        device_serial_number="0",
        series_description=description[:64],
        content_label="SEGMENTATION",
        content_description=description[:64],
    )


def _description(number: int, name: str, color, algorithm: Algorithm | None) -> hd.seg.SegmentDescription:
    category, kind = segment_codes(name)
    rgb = rgb_of(color) if color is not None else None
    identification = None
    if algorithm is not None:
        identification = hd.AlgorithmIdentificationSequence(
            name=algorithm.name[:64], version=algorithm.version[:64] or "unknown",
            family=codes.cid7162.ArtificialIntelligence)
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=name[:64],
        segmented_property_category=category,
        segmented_property_type=kind,
        algorithm_type=(hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC if algorithm
                        else hd.seg.SegmentAlgorithmTypeValues.MANUAL),
        algorithm_identification=identification,
        display_color=hd.color.CIELabColor.from_rgb(*(round(v * 255) for v in rgb)) if rgb else None,
    )


def _series_number(source: SourceSeries) -> int:
    number = source.datasets[0].get("SeriesNumber")
    return int(number) + 1000 if number not in (None, "") else 1000


def write_dicom_seg(label: Volume, source: SourceSeries, output: str | Path, names: dict[int, str],
                    **options) -> Path:
    """Write :func:`build_segmentation`'s SEG to ``output`` atomically; returns the path."""
    segmentation = build_segmentation(label, source, names, **options)
    return write_dataset_atomic(segmentation, output)


def read_dicom_seg(path: str | Path, source_folder: str | Path | None = None) -> SegmentationLabels:
    """Read a SEG onto its source series: frames placed by the instances they reference.

    Args:
        path: the SEG file.
        source_folder: where its source series lies (default: found beside the SEG, see
            :func:`~.locate.find_series_folder`).

    Raises:
        UnreadableFileError: not a SEG, or its source series is not found.
        DicomReferenceError: the SEG references no instance of the series found.
    """
    from .locate import find_series_folder
    from .source import read_source_series

    path = Path(path)
    seg = _segread(path)
    series_uid = str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID)
    folder = Path(source_folder) if source_folder else find_series_folder(series_uid, near=path)
    source = read_source_series(folder, series_uid)
    if _frames_reference_instances(seg):
        frames = seg.get_pixels_by_source_instance(source.sop_instance_uids, combine_segments=True,
                                                   skip_overlap_checks=True, dtype=np.uint16,
                                                   assert_missing_frames_are_empty=False)
    else:  # a SEG from a tool that names no source image per frame: its plane positions place the frames
        frames = _frames_by_position(seg, source.volume)
    names, colors = {}, {}
    for number in seg.segment_numbers:
        description = seg.get_segment_description(number)
        names[number] = str(description.segment_label)
        lab = description.get("RecommendedDisplayCIELabValue")
        if lab is not None:
            rgb = hd.color.CIELabColor.from_dicom_value(lab).to_rgb(clip=True)
            colors[number] = tuple(v / 255.0 for v in rgb)
    labels = source.volume.with_array(np.asarray(frames), result_path=str(path))
    return SegmentationLabels(labels, names, colors, series_uid)


def _frames_reference_instances(seg) -> bool:
    """True when every frame names the source instance it was derived from."""
    for frame in seg.get("PerFrameFunctionalGroupsSequence", []):
        derivation = frame.get("DerivationImageSequence") or []
        if not derivation or not derivation[0].get("SourceImageSequence"):
            return False
    return True


def _frames_by_position(seg, volume: Volume) -> np.ndarray:
    """Segment numbers ``(z, y, x)`` on ``volume``'s grid, each frame put at the slice its position names.

    Raises:
        DicomReferenceError: a frame lies between slices or off the grid, or has another orientation.
    """
    labels = np.zeros(volume.shape, np.uint16)
    pixels = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    shared = seg.get("SharedFunctionalGroupsSequence", [None])[0]
    for index, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        orientation = _frame_item(frame, shared, "PlaneOrientationSequence").ImageOrientationPatient
        if not np.allclose(np.asarray(orientation, float), volume.direction[:, :2].T.ravel(), atol=1e-4):
            raise DicomReferenceError("a SEG frame has another orientation than its source series' slices")
        position = np.asarray(_frame_item(frame, shared, "PlanePositionSequence").ImagePositionPatient, float)
        ijk = volume.world_to_index(position)
        k = int(round(ijk[2]))
        if not 0 <= k < volume.shape[0] or np.abs(ijk - [0, 0, k]).max() > 0.05:
            raise DicomReferenceError(f"a SEG frame at {position.round(2).tolist()} mm lies on no slice of the "
                                      "source series")
        number = int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        labels[k][pixels[index] > 0] = number
    return labels


def _frame_item(frame, shared, keyword: str):
    item = frame.get(keyword) or (shared.get(keyword) if shared is not None else None)
    if not item:
        raise DicomReferenceError(f"a SEG frame has no {keyword}: it cannot be placed on its series")
    return item[0]


def _segread(path: Path) -> hd.seg.Segmentation:
    try:
        return hd.seg.segread(path)
    except (ValueError, AttributeError, OSError, InvalidDicomError) as exc:
        raise UnreadableFileError(f"'{path.name}' is not a readable DICOM Segmentation: {exc}") from None
