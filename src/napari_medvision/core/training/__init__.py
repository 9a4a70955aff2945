"""Fine-tuning on corrected cases: the case store, the training loop, checkpoint versions.

The recipes that train the shipped sample models live in :mod:`napari_medvision.samples`.
"""

from .case_store import CaseStore

__all__ = ["CaseStore"]
