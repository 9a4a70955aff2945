"""Detection with MONAI RetinaNet detectors: boxes with labels and scores in world millimetres."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Generator

import numpy as np
import torch
from monai.data.box_utils import clip_boxes_to_image
from monai.transforms.spatial.functional import convert_box_to_points, convert_points_to_box
from monai.transforms.utils import apply_affine_to_points

from ..errors import ModelError
from ..models import Bundle, choose_device
from ..models.cache import loaded_model
from ..volume import Volume
from .channels import prepare_input
from .convert import to_metatensor
from .progress import Progress
from .windows import autocast

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
    """Boxes sorted by score, and the score threshold that kept them (scores above it are kept)."""

    boxes: list[DetectedBox]
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    score_threshold: float | None = None


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
    dims = bundle.spatial_dims
    if volume.shape[0] == 1 and dims == 3:
        raise ModelError(f"'{bundle.name}' is a 3D detector and the image is 2D (one slice)")
    if volume.shape[0] > 1 and dims == 2:
        raise ModelError(f"'{bundle.name}' is a 2D detector and the image is 3D ({volume.shape[0]} slices); "
                         "give it a 2D image (one radiograph or one slice)")
    detector = _detector_for_this_run(model.detector, score_threshold if score_threshold is not None
                                      else bundle.extras.get("score_threshold"),
                                      nms_iou if nms_iou is not None else bundle.extras.get("nms_iou"))
    yield Progress(1, 3, "preprocessing")
    notes: list[str] = []
    prepared = prepare_input(model, bundle, volume, 0 if dims == 2 else None, notes)["image"]
    yield Progress(2, 3, "detecting")
    with torch.no_grad(), autocast(torch_device, amp):
        batch = [prepared.as_tensor().to(torch_device)]
        if model.inferer is not None:  # the config's own inferer (zoo: scripts.detection_inferer.RetinaNetInferer)
            inferer = copy.copy(model.inferer)  # with this run's detector (its box selection), cache untouched
            if getattr(inferer, "detector", None) is not None:
                inferer.detector = detector
            outputs = inferer(batch, model.network)[0]
        else:
            outputs = detector(batch, use_inferer=detector.inferer is not None)[0]
    # The network pads its input to a multiple of its stride: keep boxes on the real image.
    boxes, keep = clip_boxes_to_image(outputs[detector.target_box_key].detach().cpu().double(),
                                      prepared.shape[1:], remove_empty=True)
    boxes = boxes.numpy()
    labels = outputs[detector.target_label_key].detach().cpu()[keep].numpy()
    scores = outputs[detector.pred_score_key].detach().cpu().float()[keep].numpy()
    if dims == 2:
        source_affine = to_metatensor(volume, 0).affine
        world = _boxes_2d_to_lps(boxes, _affine_nd(prepared.affine, 2), _affine_nd(source_affine, 2), volume)
    else:
        world = _boxes_to_lps(boxes, prepared.affine.detach().cpu().double().numpy())
    found = [DetectedBox(bundle.labels.get(int(label), f"class {int(label)}"), float(score), box)
             for box, label, score in zip(world, labels, scores)]
    found.sort(key=lambda b: -b.score)
    yield Progress(3, 3, "done")
    return DetectionResult(found, time.perf_counter() - start, notes=notes,
                           score_threshold=detector.box_selector.score_thresh)


def _detector_for_this_run(detector, score_threshold: float | None, nms_iou: float | None):
    """A shallow copy of the cached detector with this run's box selection (None: the detector's own).

    The copy shares the network, anchor generator and box coder (read, never written, in evaluation)
    and has its own box selector and anchor cache, so runs never see each other's thresholds.
    """
    selector = detector.box_selector
    run = copy.copy(detector)
    run.set_box_selector_parameters(
        score_thresh=selector.score_thresh if score_threshold is None else score_threshold,
        nms_thresh=selector.nms_thresh if nms_iou is None else nms_iou,
        topk_candidates_per_level=selector.topk_candidates_per_level,
        detections_per_img=selector.detections_per_img, apply_sigmoid=selector.apply_sigmoid)
    return run


def _boxes_to_lps(boxes: np.ndarray, affine_ras: np.ndarray) -> list[list[float]]:
    """``(N, 6)`` ``xyzxyz`` voxel boxes of the preprocessed image -> axis-aligned LPS boxes in mm.

    MONAI boxes treat voxel ``i`` as the interval ``[i, i + 1)`` (a mask over voxels
    ``i..j`` has the box ``[i, j + 1]``) while the affine maps voxel centres, hence ``- 0.5``.
    All eight corners are mapped, so a box stays enclosing on an oblique grid.
    """
    if len(boxes) == 0:
        return []
    corners = convert_box_to_points(torch.as_tensor(boxes - 0.5), "xyzxyz")         # (N, 8, 3)
    world = apply_affine_to_points(corners, torch.as_tensor(np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_ras))
    return convert_points_to_box(world).tolist()


def _affine_nd(affine, dims: int) -> np.ndarray:
    """The ``(dims + 1)`` square part of a MetaTensor affine (a picture's is 4x4 for its 2D data)."""
    affine = np.asarray(affine.detach().cpu().double().numpy() if isinstance(affine, torch.Tensor) else affine)
    if affine.shape[0] == dims + 1:
        return affine
    keep = [*range(dims), affine.shape[0] - 1]
    return affine[np.ix_(keep, keep)]


def _boxes_2d_to_lps(boxes: np.ndarray, prepared_affine: np.ndarray, source_affine: np.ndarray,
                     volume: Volume) -> list[list[float]]:
    """``(N, 4)`` ``xyxy`` boxes of a preprocessed 2D image -> ``[x0, y0, z0, x1, y1, z1]`` LPS mm on ``volume``.

    The two affines share one world (MONAI carries it through every spatial transform), so
    ``inv(source) @ prepared`` maps the model's pixels back to the source pixels, whose world
    position the volume's own geometry gives (a picture's MONAI affine is the identity, its
    spacing is in our header). ``- 0.5`` as in :func:`_boxes_to_lps`; z is the image's plane.
    """
    if len(boxes) == 0:
        return []
    corners = convert_box_to_points(torch.as_tensor(boxes - 0.5), "xyxy").numpy()     # (N, 4, 2)
    to_source = np.linalg.inv(source_affine) @ prepared_affine
    index = corners @ to_source[:2, :2].T + to_source[:2, 2]
    index_xyz = np.concatenate([index, np.zeros((*index.shape[:2], 1))], axis=-1)
    world = volume.index_to_world(index_xyz)                                             # (N, 4, 3)
    return np.concatenate([world.min(axis=1), world.max(axis=1)], axis=1).tolist()


def box_to_index_zyx(volume: Volume, box_world) -> tuple[np.ndarray, np.ndarray]:
    """The box's extent in the volume's continuous (z, y, x) indices: ``(low, high)``."""
    corners = convert_box_to_points(torch.tensor([box_world], dtype=torch.float64), "xyzxyz")[0].numpy()
    index = volume.world_to_index(corners)[:, ::-1]
    return index.min(axis=0), index.max(axis=0)
