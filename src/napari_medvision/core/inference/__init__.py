"""Inference engines: generators that yield :class:`Progress` and return a result."""

from .classification import ClassificationResult, classify
from .detection import DetectedBox, DetectionResult, detect
from .progress import Progress
from .run import run_model
from .segmentation import SegmentationResult, segment

__all__ = ["ClassificationResult", "DetectedBox", "DetectionResult", "Progress", "SegmentationResult",
           "classify", "detect", "run_model", "segment"]
