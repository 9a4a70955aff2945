"""The backends the docks share: one per role, made on first use, for the life of the process.

Each dock asks for its own role ("inference", "training", "interactive"), so a fine-tune, a run of
the Run-model dock and the Annotate dock's clicks can go on at once, each in its own warm worker.
``MEDVISION_COMPUTE=inprocess`` computes in the viewer's own process instead (the fallback where
worker processes cannot start).

The "interactive" worker imports only the click engines (numpy, SciPy, scikit-image: it starts in
a second or two, not torch's and MONAI's many), and a click it is asked to drop may finish its
sub-second computation rather than cost the warm worker (:data:`INTERACTIVE_CANCEL_SECONDS`).

The backends of :data:`PREWARMED` roles start their worker as soon as a dock asks for them (on a
thread of their own: the spawn never runs on the GUI thread), so the first Run or click finds the
imports paid. Fine-tuning's worker starts with the first fine-tune (it runs for minutes anyway).
"""

from __future__ import annotations

import os
import threading

from .base import ComputeBackend

#: How long a superseded click's run may go on (seconds) before its worker is ended.
INTERACTIVE_CANCEL_SECONDS = 15.0
#: Roles whose worker starts when the backend is first asked for, not with its first job.
PREWARMED = ("inference", "interactive")
_BACKENDS: dict[str, ComputeBackend] = {}
_LOCK = threading.Lock()


def shared_backend(role: str = "default") -> ComputeBackend:
    """The process-wide backend for ``role`` (a worker process unless ``MEDVISION_COMPUTE=inprocess``)."""
    with _LOCK:
        if role not in _BACKENDS:
            if os.environ.get("MEDVISION_COMPUTE", "worker").lower() == "inprocess":
                from .inprocess import InProcessBackend

                _BACKENDS[role] = InProcessBackend()
            else:
                from .local_worker import WorkerBackend

                if role == "interactive":
                    _BACKENDS[role] = WorkerBackend(INTERACTIVE_CANCEL_SECONDS,
                                                    warm=("napari_medvision.core.interactive.job",))
                else:
                    _BACKENDS[role] = WorkerBackend()
                if role in PREWARMED:
                    threading.Thread(target=_BACKENDS[role].warm_up, name=f"medvision-{role}-worker-start",
                                     daemon=True).start()
        return _BACKENDS[role]


def close_shared_backends() -> None:
    """Close every shared backend (their worker processes end)."""
    with _LOCK:
        backends = list(_BACKENDS.values())
        _BACKENDS.clear()
    for backend in backends:
        backend.close()
