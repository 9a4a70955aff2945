""""Label next": studies ranked by how unsure the current segmentation model is about them.

The score is the mean normalised entropy (0..1) of the flip-averaged (TTA) prediction inside the
predicted structures, as the inference code computes it (``segment(..., uncertainty=True)``):
a study whose structures the model hesitates about is the most useful one to annotate next.
An nnU-Net model gives no entropy map, only its (mirror-averaged) probabilities: the same score
is computed here from those (:func:`case_entropy`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Generator

import numpy as np

from ..errors import MedvisionError
from ..inference.progress import Progress

#: Folder names of label maps that a study folder may hold beside its images.
_LABEL_DIRS = {"labelsTr", "labelsTs", "editsTr", "autosave"}


def find_studies(folder: str | Path) -> list[Path]:
    """Image files and DICOM series folders directly in ``folder`` (its ``imagesTr`` for a case store).

    Raises:
        MedvisionError: not a folder, or no study in it.
    """
    from ..io import READ_EXTENSIONS

    folder = Path(folder)
    if not folder.is_dir():
        raise MedvisionError(f"'{folder}' is not a folder: give a folder of studies")
    if (folder / "imagesTr").is_dir():
        folder = folder / "imagesTr"
    studies = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name.lower().endswith(tuple(READ_EXTENSIONS)) and "label" not in path.name.lower():
            studies.append(path)
        elif path.is_dir() and path.name not in _LABEL_DIRS and any(p.is_file() for p in path.iterdir()):
            studies.append(path)
    if not studies:
        raise MedvisionError(f"no studies (image files or DICOM folders) in '{folder}'")
    return studies


def rank_studies(model, studies: list[Path], device: str = "auto") -> Generator[Progress, None, list[dict]]:
    """Score each study with ``model``'s uncertainty; returns ``[{"path", "score"}]``, most uncertain first.

    A study that cannot be read or does not fit the model is left out of the ranking with a
    ``"skipped"`` reason in its record (listed after the ranked ones).
    """
    from ..inference import run_model
    from ..io import read_volume

    ranked, skipped = [], []
    for done, path in enumerate(studies):
        yield Progress(done, len(studies), f"scoring {path.name}")
        try:
            volume = read_volume(path)
            engine = run_model(model, volume, device=device, uncertainty=True, tta=True,
                               keep_probabilities=getattr(model, "kind", "") == "nnunet")
            while True:
                try:
                    next(engine)
                except StopIteration as stop:
                    result = stop.value
                    break
        except MedvisionError as exc:
            skipped.append({"path": str(path), "score": None, "skipped": str(exc).splitlines()[0]})
            continue
        score = result.case_uncertainty
        if score is None and result.probabilities is not None:
            score = case_entropy(result.probabilities, result.labels.array)
        if score is None:
            skipped.append({"path": str(path), "score": None,
                            "skipped": f"'{model.name}' gives no probabilities to score it by"})
            continue
        ranked.append({"path": str(path), "score": round(float(score), 6)})
    ranked.sort(key=lambda record: record["score"], reverse=True)
    return ranked + skipped


def case_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean normalised entropy (0..1) of ``probabilities`` ``(C, z, y, x)`` over the voxels ``labels``
    ``(z, y, x)`` marks as foreground (over every voxel when it marks none)."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    entropy = -(probabilities * np.log(np.clip(probabilities, 1e-6, 1))).sum(axis=0)
    entropy /= np.log(max(probabilities.shape[0], 2))
    foreground = np.asarray(labels) > 0
    return float(entropy[foreground].mean() if foreground.any() else entropy.mean())
