"""Detection with MONAI RetinaNet detectors: boxes with labels and scores in world millimetres."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Generator

import numpy as np
import torch
from monai.data.box_utils import clip_boxes_to_image

from ..errors import ModelError
from ..models import Bundle, choose_device
from ..models.cache import loaded_model
from ..volume import Volume
from .convert import run_preprocessing, to_metatensor
from .progress import Progress
from .windows import autocast

_RAS_TO_LPS = np.array([-1.0, -1.0, 1.0])


@dataclass
class DetectedBox:
    """One detection: its class name, score and axis-aligned box ``[x0, y0, z0, x1, y1, z1]`` (LPS mm)."""

    label: str
    score: float
    box_world: list[float]

    def to_dict(self) -> dict:
        return {"label": self.label, "score": self.score, "box_world": self.box_world}


@dataclass
class DetectionResult:
    boxes: list[DetectedBox]
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def detect(bundle: Bundle, volume: Volume, *, device: str = "auto", score_threshold: float | None = None,
           nms_iou: float | None = None, amp: bool = True) -> Generator[Progress, None, DetectionResult]:
    """Detect objects in ``volume``; yields progress, returns boxes sorted by score.

    ``score_threshold`` and ``nms_iou`` override the detector's box selector
    (defaults: the bundle's ``medvision`` keys, else the detector's own).
    """
    start = time.perf_counter()
    if bundle.task != "detection":
        raise ModelError(f"'{bundle.name}' is a {bundle.task} model, not a detector")
    torch_device = choose_device(device)
    yield Progress(0, 3, f"loading {bundle.name}")
    model = loaded_model(bundle, torch_device)
    detector = model.detector
    if volume.shape[0] == 1 and bundle.spatial_dims == 3:
        raise ModelError(f"'{bundle.name}' is a 3D detector and the image is 2D (one slice)")
    threshold = score_threshold if score_threshold is not None else bundle.extras.get("score_threshold")
    nms = nms_iou if nms_iou is not None else bundle.extras.get("nms_iou")
    if threshold is not None or nms is not None:
        detector.set_box_selector_parameters(
            score_thresh=threshold if threshold is not None else detector.box_selector.score_thresh,
            nms_thresh=nms if nms is not None else detector.box_selector.nms_thresh,
            topk_candidates_per_level=detector.box_selector.topk_candidates_per_level,
            detections_per_img=detector.box_selector.detections_per_img)
    yield Progress(1, 3, "preprocessing")
    data = run_preprocessing(model, {"image": to_metatensor(volume)}, bundle.name)
    prepared = data["image"]
    if prepared.shape[0] != bundle.in_channels:
        raise ModelError(f"'{bundle.name}' expects {bundle.in_channels} input channel(s); "
                         f"the image gives {prepared.shape[0]}")
    yield Progress(2, 3, "detecting")
    with torch.no_grad(), autocast(torch_device, amp):
        outputs = detector([prepared.as_tensor().to(torch_device)], use_inferer=detector.inferer is not None)[0]
    # The network pads its input to a multiple of its stride: keep boxes on the real image.
    boxes, keep = clip_boxes_to_image(outputs[detector.target_box_key].detach().cpu().double(),
                                      prepared.shape[1:], remove_empty=True)
    boxes = boxes.numpy()
    labels = outputs[detector.target_label_key].detach().cpu()[keep].numpy()
    scores = outputs[detector.pred_score_key].detach().cpu().float()[keep].numpy()
    affine = prepared.affine.detach().cpu().double().numpy()
    found = []
    for box, label, score in zip(boxes, labels, scores):
        if threshold is not None and score < threshold:
            continue
        found.append(DetectedBox(bundle.labels.get(int(label), f"class {int(label)}"), float(score),
                                 _box_to_lps(box, affine)))
    found.sort(key=lambda b: -b.score)
    yield Progress(3, 3, "done")
    return DetectionResult(found, time.perf_counter() - start)


def _box_to_lps(box: np.ndarray, affine_ras: np.ndarray) -> list[float]:
    """An ``xyzxyz`` voxel box of the preprocessed image -> axis-aligned LPS box in mm.

    MONAI boxes treat voxel ``i`` as the interval ``[i, i + 1)`` (a mask over voxels
    ``i..j`` has the box ``[i, j + 1]``) while the affine maps voxel centres, hence ``- 0.5``.
    """
    low, high = box[:3] - 0.5, box[3:] - 0.5
    corners = np.array([[c[0], c[1], c[2]] for c in np.array(np.meshgrid(*zip(low, high))).T.reshape(-1, 3)])
    world = (affine_ras[:3, :3] @ corners.T).T + affine_ras[:3, 3]
    world *= _RAS_TO_LPS
    return [float(v) for v in (*world.min(axis=0), *world.max(axis=0))]


def box_to_index_zyx(volume: Volume, box_world) -> tuple[np.ndarray, np.ndarray]:
    """The box's extent in the volume's continuous (z, y, x) indices: ``(low, high)``."""
    low, high = np.asarray(box_world[:3]), np.asarray(box_world[3:])
    corners = np.array(np.meshgrid(*zip(low, high))).T.reshape(-1, 3)
    index = volume.world_to_index(corners)[:, ::-1]
    return index.min(axis=0), index.max(axis=0)
