"""Compute backends: where the docks' jobs (inference, fine-tuning, any named core function) run.

See :mod:`.base` for the interface and its conventions.
"""

from .base import (CANCEL_SECONDS, FINETUNE, RUN_MODEL, BackendError, ComputeBackend, Job, WorkerDiedError, drive,
                   resolve)
from .inprocess import InProcessBackend
from .local_worker import WorkerBackend
from .shared import close_shared_backends, shared_backend

__all__ = ["CANCEL_SECONDS", "FINETUNE", "RUN_MODEL", "BackendError", "ComputeBackend", "InProcessBackend", "Job",
           "WorkerBackend", "WorkerDiedError", "close_shared_backends", "drive", "resolve", "shared_backend"]
