"""A MONAI Label server as a compute backend for the docks: the models it offers, jobs that run on it.

It keeps the conventions of the docks' backend interface (``core.backend.base.ComputeBackend``): a job
is a generator yielding progress and returning the same result objects as the local engines
(a segmentation's label map on the study's exact grid), :meth:`cancel` stops the current job at its
next step (a training on the server is stopped there too), errors are ``MedvisionError`` subclasses,
and a lost connection is a :class:`~.monailabel.ServerError` with nothing local changed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..errors import CancelledError, MedvisionError
from .jobs import server_finetune, server_segment
from .monailabel import MonaiLabelClient


@dataclass
class ServerModel:
    """A model on a MONAI Label server, described as the registry describes local ones."""

    name: str
    task: str
    labels: dict[int, str]
    url: str
    description: str = ""
    trainable: bool = False
    trusted: bool = True          # it runs on the server: no code of its own runs here
    in_channels: int = 1
    kind: str = "monailabel"
    path: str = field(default="")

    def __post_init__(self):
        self.path = self.path or f"{self.url}#{self.name}"

    @property
    def display_name(self) -> str:
        return f"{self.name} (server)"

    def summary(self) -> dict:
        return {"name": self.name, "task": self.task, "path": self.path, "kind": self.kind,
                "labels": {str(k): v for k, v in self.labels.items()}, "description": self.description,
                "trainable": self.trainable, "needs_trust": False, "trusted": True, "trust_findings": []}


class MonaiLabelBackend:
    """Jobs on one MONAI Label server (the token stays in memory, in the client)."""

    def __init__(self, url: str, token: str | None = None):
        self.client = MonaiLabelClient(url, token=token)
        self.name = f"server {self.client.url}"
        self._cancel = threading.Event()
        self._lock = threading.Lock()

    def list_models(self) -> list[ServerModel]:
        return [ServerModel(r["name"], r["task"], {int(k): v for k, v in r["labels"].items()}, self.client.url,
                            r["description"], r["trainable"]) for r in self.client.models()]

    def run_model(self, model, volume, **options):
        """A job segmenting ``volume`` with the server's ``model`` (a ServerModel or its name)."""
        name = getattr(model, "name", model)
        return self._job(lambda: server_segment(self.client, name, volume[0] if isinstance(volume, list) else volume))

    def finetune(self, model, store, versions=None, settings=None, **kwargs):
        """A job training the server's ``model`` on ``store``'s cases; returns the server's summary."""
        name = getattr(model, "name", model)
        epochs = getattr(settings, "epochs", 1) if settings is not None else kwargs.get("epochs", 1)
        return self._job(lambda: server_finetune(self.client, name, store, epochs=epochs))

    def run(self, function: str, *args, **kwargs):
        raise MedvisionError(f"a MONAI Label server runs its own models, not '{function}'")

    def cancel(self) -> None:
        self._cancel.set()

    def close(self) -> None:
        self.cancel()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def _job(self, make):
        """The generator ``make()`` returns, one at a time, ended with CancelledError after :meth:`cancel`."""
        with self._lock:
            self._cancel.clear()
            inner = make()
            try:
                while True:
                    try:
                        item = next(inner)
                    except StopIteration as stop:
                        return stop.value
                    if self._cancel.is_set():
                        inner.close()       # a server training is stopped by its generator's close
                        raise CancelledError("cancelled: nothing was changed")
                    yield item
            finally:
                inner.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
