"""A MONAI Label server as a :class:`~..backend.base.ComputeBackend`: the docks' second place to compute.

"This computer" (a warm worker process, or this process) and "a MONAI Label server" are two
implementations of one interface: a job is a generator yielding progress and returning the same result
objects as the local engines (a segmentation's ``SegmentationResult``, label map on the study's exact
grid), :meth:`MonaiLabelBackend.cancel` ends the current job within :data:`~..backend.base.CANCEL_SECONDS`
even while a request is on the wire (a training on the server is stopped too), and errors are
``MedvisionError`` subclasses: a lost connection is a :class:`~.monailabel.ServerError`, with nothing
local changed. What a server cannot do (named core functions, non-segmentation models, local versions)
raises :class:`ServerCannotError`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..backend.base import CANCEL_SECONDS, BackendError, ComputeBackend, Job
from ..errors import CancelledError
from .jobs import server_finetune, server_segment
from .monailabel import MonaiLabelClient

#: Seconds between two looks at the cancel flag while the server is answering a request
#: (well within the interface's CANCEL_SECONDS).
_POLL_SECONDS = min(0.05, CANCEL_SECONDS / 10)


class ServerCannotError(BackendError):
    """The job asked for is one a MONAI Label server does not do (the message says what to use instead)."""


@dataclass
class ServerModel:
    """A model on a MONAI Label server, described as the registry describes local ones.

    It satisfies what the docks read of a model (``core.models.interface.Model``): name, task, labels,
    description, metadata, colours, trust (none needed: its code runs on the server, none here).
    """

    name: str
    task: str
    labels: dict[int, str]
    url: str
    description: str = ""
    trainable: bool = False
    trusted: bool = True
    in_channels: int = 1
    kind: str = "monailabel"
    path: str = field(default="")
    metadata: dict = field(default_factory=dict)
    colors: dict | None = None

    def __post_init__(self):
        self.path = self.path or f"{self.url}#{self.name}"
        self.metadata = self.metadata or {"intended_use": f"runs on the MONAI Label server {self.url}"}

    @property
    def display_name(self) -> str:
        return f"{self.name} (server)"

    def trust_findings(self) -> list[str]:
        """Nothing of a server model runs in this process: no trust to give."""
        return []

    def summary(self) -> dict:
        return {"name": self.name, "task": self.task, "path": self.path, "kind": self.kind,
                "labels": {str(k): v for k, v in self.labels.items()}, "description": self.description,
                "trainable": self.trainable, "needs_trust": False, "trusted": True, "trust_findings": []}


class MonaiLabelBackend(ComputeBackend):
    """Jobs on one MONAI Label server (the token stays in memory, in the client; never in ``name``).

    Args:
        url: the server's root, e.g. ``http://gpu-server:8000``.
        token: bearer token; default ``MEDVISION_SERVER_TOKEN`` (None and no variable: no auth header).
    """

    def __init__(self, url: str, token: str | None = None):
        self.client = MonaiLabelClient(url, token=token)
        self.name = f"MONAI Label server {self.client.url}"
        self._cancel = threading.Event()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MonaiLabelBackend({self.client!r})"

    # -- what the server offers ---------------------------------------------------------------------
    def list_models(self) -> list[ServerModel]:
        """The server's models (``GET /info/``, read afresh each time).

        Raises:
            ServerError: unreachable, refused (401) or not a MONAI Label server.
        """
        self.client.info(refresh=True)
        return [ServerModel(r["name"], r["task"], {int(k): v for k, v in r["labels"].items()}, self.client.url,
                            r["description"], r["trainable"]) for r in self.client.models()]

    def warm_up(self) -> None:
        """Read the server's model list in the background (errors wait for the first job)."""
        def read():
            try:
                self.client.info()
            except Exception:  # noqa: BLE001 - the first real request reports it
                pass

        threading.Thread(target=read, name="medvision-server-warm-up", daemon=True).start()

    def restart(self) -> None:
        """Nothing to restart here: forget the cached model list, so the next job asks the server again."""
        self.client._info = None

    # -- jobs -----------------------------------------------------------------------------------------
    def run(self, function: str, *args, **kwargs) -> Job:
        """Refused (when iterated, as the interface says): a server runs no named core functions."""
        yield from ()
        raise ServerCannotError(f"a MONAI Label server runs its own models, not napari-medvision's '{function}'; "
                                "choose 'This computer' to run it")

    def run_model(self, model, volume, **options) -> Job:
        """A job segmenting ``volume`` (a Volume; a one-item list too) with the server's ``model``.

        The engines' local options (device, overlap, TTA...) do not apply: the server's app decides them.
        Returns (when iterated to its end) a ``SegmentationResult`` with the study's exact geometry.

        Raises:
            ServerCannotError: a model that is not a segmentation, or several input channels.
        """
        name = getattr(model, "name", model)
        task = getattr(model, "task", "segmentation")
        if task != "segmentation":
            raise ServerCannotError(f"'{name}' on {self.client.url} is a {task} model; only segmentation "
                                    "models run on a server")
        if isinstance(volume, (list, tuple)):
            if len(volume) != 1:
                raise ServerCannotError(f"a server model takes one image, not {len(volume)} channels")
            volume = volume[0]
        return self._job(lambda: server_segment(self.client, name, volume))

    def finetune(self, model, store, versions=None, settings=None, **kwargs) -> Job:
        """A job uploading ``store``'s cases (images and corrected labels), training the server's ``model``.

        ``versions`` is ignored (the new weights stay on the server); ``settings.epochs`` (or
        ``epochs=``) and ``settings.max_minutes`` are honoured. Yields text (uploads, the server's
        training status); returns the server's summary ``{"model", "server", "cases", "status",
        "metric", "metric_name", "epochs", "seconds"}`` instead of a local ``FinetuneResult``.
        """
        name = getattr(model, "name", model)
        epochs = int(getattr(settings, "epochs", None) or kwargs.get("epochs") or 1)
        minutes = float(getattr(settings, "max_minutes", None) or kwargs.get("max_minutes") or 60.0)
        return self._job(lambda: server_finetune(self.client, name, store, epochs=epochs, max_minutes=minutes))

    def cancel(self) -> None:
        self._cancel.set()

    def close(self) -> None:
        self.cancel()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def _job(self, make) -> Job:
        """Iterate the generator ``make()`` returns, each step on a helper thread so that a cancel ends the job
        within :data:`CANCEL_SECONDS` even while a request is on the wire (its answer is then dropped)."""
        if not self._acquire():
            raise CancelledError("cancelled: nothing was changed")
        self._cancel.clear()
        inner, stepper = make(), None
        try:
            while True:
                stepper = _Step(inner)
                while not stepper.done.wait(_POLL_SECONDS):
                    if self._cancel.is_set():
                        raise CancelledError("cancelled: nothing was changed")
                if stepper.error is not None:
                    if isinstance(stepper.error, StopIteration):
                        return stepper.error.value
                    raise stepper.error
                if self._cancel.is_set():
                    raise CancelledError("cancelled: nothing was changed")
                yield stepper.item
        finally:
            if stepper is not None and not stepper.done.is_set():
                stepper.close_when_done()      # the request still on the wire: close the job after it
            else:
                inner.close()                  # a server training is stopped by its generator's close
            self._lock.release()

    def _acquire(self) -> bool:
        """One job at a time: wait for the one running (a cancel stops the waiting)."""
        while not self._lock.acquire(timeout=_POLL_SECONDS):
            if self._cancel.is_set():
                return False
        return True


class _Step:
    """One ``next(generator)`` on a daemon thread: ``done`` is set when it returned or raised."""

    def __init__(self, generator):
        self.generator, self.item, self.error = generator, None, None
        self.done = threading.Event()
        self._close_after = False
        self._mutex = threading.Lock()
        threading.Thread(target=self._run, name="medvision-server-request", daemon=True).start()

    def _run(self) -> None:
        try:
            self.item = next(self.generator)
        except BaseException as exc:  # noqa: BLE001 - handed to the job's thread
            self.error = exc
        with self._mutex:
            self.done.set()
            close = self._close_after
        if close:
            self.generator.close()

    def close_when_done(self) -> None:
        """Close the generator once this step has finished (now, if it already has)."""
        with self._mutex:
            if not self.done.is_set():
                self._close_after = True
                return
        self.generator.close()
