"""The :class:`Volume`: a voxel array with its exact ITK geometry.

Conventions (the same as SimpleITK's ``GetArrayFromImage``):

* ``array`` is indexed ``(z, y, x)``; a 2D image is a volume with one slice.
* ``spacing`` and ``origin`` are ``(x, y, z)`` in millimetres, ``direction`` is
  the 3x3 matrix whose *columns* are the x, y and z index axes in LPS world
  space. They are stored exactly as ITK reports them.

The world position of voxel index ``(i, j, k)`` (x, y, z order) is
``origin + direction @ (spacing * (i, j, k))`` in LPS millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import SimpleITK as sitk

from .errors import GeometryMismatchError

#: Absolute tolerance used to decide that two geometries are the same.
GEOMETRY_TOLERANCE = 1e-6
#: Tolerance when pairing a label map with its image (mm for spacing / origin, cosines for
#: direction): NIfTI keeps its header in float32, so a faithful copy can differ by ~1e-5 mm.
PAIRING_TOLERANCE = 1e-4


@dataclass(eq=False)
class Volume:
    """A 3D voxel array (z, y, x) with spacing / origin / direction (x, y, z, LPS, mm).

    Attributes:
        array: voxel values, shape ``(z, y, x)``.
        spacing: voxel size in mm, ``(x, y, z)``.
        origin: world position (LPS, mm) of voxel ``(0, 0, 0)``.
        direction: 3x3 direction cosines, columns are the index axes.
        metadata: source information (``modality``, ``path``, DICOM
            ``series_description``, ...). JSON-serialisable values only.
        warnings: problems found while reading that did not stop it.
        channels: for a colour picture, its samples as the file holds them, ``(z, y, x, C)``
            (``array`` then holds their luminance, for windows and measurements); else None.
            Models get these (see ``inference.convert``); arrays derived from the volume
            (labels, heatmaps) do not inherit them.
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    channels: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.array.ndim == 2:
            self.array = self.array[np.newaxis]
        if self.array.ndim != 3:
            raise ValueError(f"Volume needs a 3D (z, y, x) array, got shape {self.array.shape}")
        if self.channels is not None:
            if self.channels.ndim == 3:
                self.channels = self.channels[np.newaxis]
            if self.channels.shape[:3] != self.array.shape:
                raise ValueError(f"colour samples {self.channels.shape} do not fit the grey array {self.array.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(z, y, x)``."""
        return tuple(self.array.shape)

    @property
    def size(self) -> tuple[int, int, int]:
        """Voxel counts in ITK order ``(x, y, z)``."""
        return tuple(reversed(self.array.shape))

    @property
    def modality(self) -> str | None:
        return self.metadata.get("modality")

    @property
    def geometry(self) -> dict[str, list[float]]:
        """JSON-friendly geometry: ``size``, ``spacing``, ``origin``, ``direction`` (row-major)."""
        return {
            "size": [int(s) for s in self.size],
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": [float(v) for v in self.direction.ravel()],
        }

    def with_array(self, array: np.ndarray, **metadata: Any) -> "Volume":
        """A new Volume on the same grid holding ``array`` (e.g. a label map)."""
        fits = tuple(array.shape) == self.shape or (array.ndim == 2 and (1, *array.shape) == self.shape)
        if not fits:
            raise GeometryMismatchError(
                f"array of shape {array.shape} does not fit a volume of shape {self.shape}"
            )
        return replace(self, array=array, metadata={**self.metadata, **metadata}, warnings=[], channels=None)

    # --- world coordinates -------------------------------------------------
    def index_to_world(self, index_xyz: np.ndarray) -> np.ndarray:
        """World LPS mm of continuous indices ``(..., 3)`` given in (x, y, z) order."""
        index_xyz = np.asarray(index_xyz, dtype=float)
        return np.asarray(self.origin) + index_xyz @ (self.direction * np.asarray(self.spacing)).T

    def world_to_index(self, world: np.ndarray) -> np.ndarray:
        """Continuous (x, y, z) indices of LPS mm points ``(..., 3)``."""
        matrix = self.direction * np.asarray(self.spacing)
        return (np.asarray(world, dtype=float) - np.asarray(self.origin)) @ np.linalg.inv(matrix).T

    def napari_affine(self) -> np.ndarray:
        """4x4 affine mapping napari data indices (z, y, x) to world (z, y, x) LPS mm.

        napari orders both data and world axes z, y, x, so the ITK matrix
        ``direction @ diag(spacing)`` is conjugated by the axis reversal.
        """
        return napari_affine(self.spacing, self.origin, self.direction)

    # --- SimpleITK ---------------------------------------------------------
    def to_sitk(self, keep_2d: bool = False) -> sitk.Image:
        """A 3D SimpleITK image with this array and geometry; with ``keep_2d``, 2D again for an image
        read as 2D (one slice at z = 0, see :meth:`from_sitk`): a 2D study's result files are 2D."""
        if keep_2d and self.metadata.get("dimension") == 2 and self.array.shape[0] == 1 \
                and np.allclose(self.direction[2], (0, 0, 1)) and np.allclose(self.direction[:2, 2], 0):
            image = sitk.GetImageFromArray(self.array[0])
            image.SetSpacing(tuple(float(v) for v in self.spacing[:2]))
            image.SetOrigin(tuple(float(v) for v in self.origin[:2]))
            image.SetDirection([float(v) for v in self.direction[:2, :2].ravel()])
            return image
        image = sitk.GetImageFromArray(self.array)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection([float(v) for v in self.direction.ravel()])
        return image

    @classmethod
    def from_sitk(cls, image: sitk.Image, **metadata: Any) -> "Volume":
        """Wrap a 2D or 3D SimpleITK image; a 2D image becomes one slice at z = 0."""
        array = sitk.GetArrayFromImage(image)
        if image.GetDimension() == 2:
            spacing = (*image.GetSpacing(), 1.0)
            origin = (*image.GetOrigin(), 0.0)
            direction = np.eye(3)
            direction[:2, :2] = np.reshape(image.GetDirection(), (2, 2))
            return cls(array[np.newaxis], spacing, origin, direction, {**metadata, "dimension": 2})
        if image.GetDimension() != 3:
            raise ValueError(f"expected a 2D or 3D image, got {image.GetDimension()}D")
        return cls(array, image.GetSpacing(), image.GetOrigin(),
                   np.reshape(image.GetDirection(), (3, 3)), dict(metadata))


def napari_affine(spacing, origin, direction) -> np.ndarray:
    """4x4 napari affine (z, y, x order) from ITK spacing / origin / direction (x, y, z order)."""
    matrix = np.asarray(direction, dtype=float).reshape(3, 3) * np.asarray(spacing, dtype=float)
    affine = np.eye(4)
    affine[:3, :3] = matrix[::-1, ::-1]
    affine[:3, 3] = np.asarray(origin, dtype=float)[::-1]
    return affine


def geometry_from_napari_affine(affine: np.ndarray) -> tuple[tuple, tuple, np.ndarray]:
    """Inverse of :func:`napari_affine`: ``(spacing, origin, direction)`` in ITK order.

    Raises:
        GeometryMismatchError: the affine has shear or a zero axis, which no ITK
            image header can represent.
    """
    affine = np.asarray(affine, dtype=float)
    matrix = affine[:3, :3][::-1, ::-1]
    spacing = np.linalg.norm(matrix, axis=0)
    if np.any(spacing <= 0):
        raise GeometryMismatchError("the layer's transform collapses an axis; it cannot be written as an image")
    direction = matrix / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-5):
        raise GeometryMismatchError("the layer's transform has shear; an image header cannot store it")
    return tuple(spacing), tuple(affine[:3, 3][::-1]), direction


def geometry_differences(a: Volume, b: Volume, names: tuple[str, str] = ("first", "second"),
                         tol: float = GEOMETRY_TOLERANCE) -> list[str]:
    """Human-readable differences between two volumes' grids (empty when they match)."""
    first, second = names
    checks = [
        ("size (x,y,z)", a.size, b.size, ""),
        ("spacing", a.spacing, b.spacing, " mm"),
        ("origin", a.origin, b.origin, " mm"),
        ("direction", a.direction.ravel(), b.direction.ravel(), ""),
    ]
    diffs = []
    for what, va, vb, unit in checks:
        if np.shape(va) != np.shape(vb) or not np.allclose(va, vb, atol=tol, rtol=0):
            diffs.append(f"{what} {first} {_fmt(va)} vs {second} {_fmt(vb)}{unit}")
    return diffs


def check_same_geometry(image: Volume, label: Volume, what: str = "label map", *,
                        tol: float = PAIRING_TOLERANCE) -> None:
    """Refuse to pair ``label`` with ``image`` unless their grids are the same (to ``tol``).

    When both volumes were read from files (``metadata["path"]``), the message names both files.

    Raises:
        GeometryMismatchError: naming every difference.
    """
    diffs = geometry_differences(image, label, names=("image", what), tol=tol)
    if not diffs:
        return
    image_file, label_file = image.metadata.get("path"), label.metadata.get("path")
    if image_file and label_file:
        raise GeometryMismatchError(
            f"the {what} '{label_file}' does not match the geometry of its image '{image_file}': "
            + "; ".join(diffs) + "; resample it onto the image's grid"
        )
    raise GeometryMismatchError(f"the {what} does not match the image's geometry: " + "; ".join(diffs))


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v + 0.0:.6g}" for v in values) + ")"  # + 0.0: no "-0"
