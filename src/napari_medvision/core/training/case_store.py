"""The case store: annotated cases in the nnU-Net raw-dataset layout.

::

    ROOT/dataset.json
    ROOT/imagesTr/<case>_0000.nii.gz
    ROOT/labelsTr/<case>.nii.gz      (same geometry as its image)

A case counts only when both files exist. A case is written whole into a staging folder
(``ROOT/.staging``) first, then published by renames with its label last; replacing a case hides
the old one (its label goes first), so a crash never leaves a half case, nor a new label beside an
old image, visible.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .._atomic import write_json_atomic
from ..errors import MedvisionError
from ..io import read_volume, write_volume
from ..io._itk import quiet_itk
from ..volume import Volume, check_same_geometry

FILE_ENDING = ".nii.gz"
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class CaseStore:
    """A folder of image / label pairs with a ``dataset.json`` naming the labels."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def images_dir(self) -> Path:
        return self.root / "imagesTr"

    @property
    def labels_dir(self) -> Path:
        return self.root / "labelsTr"

    @property
    def edits_dir(self) -> Path:
        """Masks of the voxels the user changed from the model's output (our addition to the layout)."""
        return self.root / "editsTr"

    @classmethod
    def create(cls, root: str | Path, labels: dict[str, int], channel: str = "CT",
               name: str | None = None, **extra) -> "CaseStore":
        """Create (or open) a store whose ``dataset.json`` names ``labels``.

        Args:
            labels: ``{"background": 0, "liver": 1, ...}`` as nnU-Net expects.
            channel: the imaging channel's name (``"CT"``, ``"MR"``...).
            extra: more keys for ``dataset.json`` (kept under ``"medvision"``).
        """
        store = cls(root)
        store.images_dir.mkdir(parents=True, exist_ok=True)
        store.labels_dir.mkdir(parents=True, exist_ok=True)
        dataset = {
            "name": name or store.root.name,
            "channel_names": {"0": channel},
            "labels": dict(labels),
            "numTraining": 0,
            "file_ending": FILE_ENDING,
        }
        if extra:
            dataset["medvision"] = extra
        write_json_atomic(store.root / "dataset.json", dataset)
        store._update_count()
        return store

    def dataset(self) -> dict:
        """The parsed ``dataset.json``.

        Raises:
            MedvisionError: a missing folder, no ``dataset.json``, or one that is not a JSON object with labels.
        """
        path = self.root / "dataset.json"
        if not self.root.is_dir():
            raise MedvisionError(f"case store '{self.root}' does not exist (or is not a folder)")
        if not path.is_file():
            raise MedvisionError(f"'{self.root}' is not a case store (no dataset.json); "
                                 "create one in the Fine-tune dock or with 'medvision phantom'")
        try:
            dataset = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise MedvisionError(f"'{path}' cannot be read as JSON ({_first_line(exc)})") from None
        if not isinstance(dataset, dict) or not isinstance(dataset.get("labels"), dict):
            raise MedvisionError(f"'{path}' is not an nnU-Net dataset.json: it needs a \"labels\" object")
        return dataset

    def check(self) -> "CaseStore":
        """Refuse, before any work, a folder that is not a readable case store; returns the store.

        Raises:
            MedvisionError: see :meth:`dataset`; also labels that are not whole numbers.
        """
        try:
            self.label_names()
        except (TypeError, ValueError):
            raise MedvisionError(f"'{self.root / 'dataset.json'}' has labels that are not whole numbers") from None
        return self

    def label_names(self) -> dict[int, str]:
        """``{value: name}`` of the store's labels, background excluded."""
        return {int(v): k for k, v in self.dataset()["labels"].items() if int(v) != 0}

    def case_ids(self) -> list[str]:
        """Complete cases (image and label both present), sorted."""
        ids = []
        for label in _listed(self.labels_dir, f"*{FILE_ENDING}"):
            case_id = label.name[: -len(FILE_ENDING)]
            if self.image_path(case_id).exists():
                ids.append(case_id)
        return ids

    def incomplete_cases(self) -> dict[str, str]:
        """Cases with only one of their two files: ``{case: "no label file" | "no image file"}``."""
        found = {}
        for image in _listed(self.images_dir, f"*_0000{FILE_ENDING}"):
            case_id = image.name[: -len(f"_0000{FILE_ENDING}")]
            if not self.label_path(case_id).exists():
                found[case_id] = "no label file"
        for label in _listed(self.labels_dir, f"*{FILE_ENDING}"):
            case_id = label.name[: -len(FILE_ENDING)]
            if not self.image_path(case_id).exists():
                found[case_id] = "no image file"
        return dict(sorted(found.items()))

    def image_path(self, case_id: str) -> Path:
        return self.images_dir / f"{case_id}_0000{FILE_ENDING}"

    def label_path(self, case_id: str) -> Path:
        return self.labels_dir / f"{case_id}{FILE_ENDING}"

    def add_case(self, case_id: str, image: Volume, label: Volume, model_output: Volume | None = None) -> None:
        """Write one case; the label must lie on the image's grid.

        With ``model_output`` (the prediction the user started from), the voxels whose label
        differs from it are stored as an edit mask, for correction-aware fine-tuning.

        Raises:
            GeometryMismatchError: image and label differ in geometry.
            MedvisionError: an invalid case name.
        """
        if not _CASE_ID.match(case_id):
            raise MedvisionError(f"case name {case_id!r} may use only letters, digits, '_', '-' and '.'")
        check_same_geometry(image, label)
        if model_output is not None:
            check_same_geometry(image, model_output, "model output")
        (self.root / ".staging").mkdir(exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{case_id}.", dir=self.root / ".staging"))
        try:
            staged = {}
            if model_output is not None:
                edits = (label.array != model_output.array).astype(np.uint8)
                staged["edits"] = write_volume(image.with_array(edits), staging / "edits.nii.gz", labels=True)
            staged["label"] = write_volume(label, staging / "label.nii.gz", labels=True)
            staged["image"] = write_volume(image, staging / "image.nii.gz")
            self._publish(case_id, staged)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._update_count()

    def _publish(self, case_id: str, staged: dict[str, Path]) -> None:
        """Move a staged case into place: the old label (hiding the old case) and stale edits go
        first, the new label comes last (showing the new case)."""
        self.label_path(case_id).unlink(missing_ok=True)
        self.edit_path(case_id).unlink(missing_ok=True)
        if "edits" in staged:
            self.edits_dir.mkdir(exist_ok=True)
            os.replace(staged["edits"], self.edit_path(case_id))
        os.replace(staged["image"], self.image_path(case_id))
        os.replace(staged["label"], self.label_path(case_id))

    def check_geometry(self, case_id: str) -> None:
        """Refuse a case whose label lies on another grid than its image, from the two file headers only
        (no voxels are read, so a whole store is checked before any work starts).

        Raises:
            GeometryMismatchError: naming both files and every difference.
        """
        image, label = _header_volume(self.image_path(case_id)), _header_volume(self.label_path(case_id))
        if image is not None and label is not None:
            check_same_geometry(image, label)

    def edit_path(self, case_id: str) -> Path:
        return self.edits_dir / f"{case_id}{FILE_ENDING}"

    def read_case(self, case_id: str) -> tuple[Volume, Volume]:
        """``(image, label)`` of one case, checked to share one grid.

        Raises:
            GeometryMismatchError: the label's size, spacing, origin or direction differs from the
                image's (beyond :data:`~..volume.PAIRING_TOLERANCE`), naming both files.
        """
        image, label = read_volume(self.image_path(case_id)), read_volume(self.label_path(case_id))
        check_same_geometry(image, label)
        return image, label

    def read_edits(self, case_id: str) -> Volume | None:
        """The case's edit mask, or None when it was added without a model output."""
        path = self.edit_path(case_id)
        return read_volume(path) if path.exists() else None

    def remove_case(self, case_id: str) -> None:
        """Delete a case's files (image last, so a half-removed case is no longer listed)."""
        for path in (self.label_path(case_id), self.edit_path(case_id), self.image_path(case_id)):
            path.unlink(missing_ok=True)
        self._update_count()

    def _update_count(self) -> None:
        dataset = self.dataset()
        dataset["numTraining"] = len(self.case_ids())
        write_json_atomic(self.root / "dataset.json", dataset)


def _listed(folder: Path, pattern: str) -> list[Path]:
    """Files in ``folder`` matching ``pattern``, sorted, without hidden ones (temp files being written)."""
    return sorted(path for path in folder.glob(pattern) if not path.name.startswith("."))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _header_volume(path: Path) -> Volume | None:
    """A voxel-less Volume with the geometry of ``path``'s header (None if the header is unreadable:
    reading the file then reports why)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with quiet_itk():
            reader.ReadImageInformation()
    except RuntimeError:
        return None
    if reader.GetDimension() != 3:
        return None
    voxels = np.broadcast_to(np.zeros((), np.uint8), tuple(reversed(reader.GetSize())))
    return Volume(voxels, reader.GetSpacing(), reader.GetOrigin(), np.reshape(reader.GetDirection(), (3, 3)),
                  {"path": str(path)})
