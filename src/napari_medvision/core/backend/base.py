"""One interface for wherever the compute runs: :class:`ComputeBackend`.

The docks (and the CLI) never call the engines directly: they ask a backend for a *job*.
Two kinds of backend exist: a local one (:class:`~.local_worker.WorkerBackend`, a warm worker
process; :class:`~.inprocess.InProcessBackend`, the caller's own process) and a remote one
(:class:`~napari_medvision.core.remote.backend.MonaiLabelBackend`, a MONAI Label server). Callers never
branch on which (the docks' "Compute on" choice only swaps the instance).

Conventions every backend keeps:

* **A job is a generator.** ``run_model``, ``finetune`` and ``run`` return at once, without
  starting anything; iterating the job runs it. Each ``yield`` is a progress item (the engines'
  own: :class:`~napari_medvision.core.inference.Progress`, the trainer's ``TrainStep``, or a line of
  text), and the generator's return value is the result: the same result objects the core
  engines return (``SegmentationResult``, ``ClassificationResult``, ``DetectionResult``,
  ``FinetuneResult``...), arrays included, geometry exact. A napari worker can iterate it as it is.
* **Cancel** from any thread with :meth:`ComputeBackend.cancel`, or by closing the job from the
  thread iterating it (``job.close()``, what a napari worker's ``quit()`` leads to). The current job
  stops within :data:`CANCEL_SECONDS`; a job still being iterated then ends with
  :class:`~napari_medvision.core.errors.CancelledError`. A cancelled job changes nothing (a
  fine-tune asked to keep its best epoch may still write that version).
* **Errors** are the same :class:`~napari_medvision.core.errors.MedvisionError` subclasses, with the
  same messages, as the in-process engines raise; other failures keep their type where it can be
  rebuilt (a torch ``RuntimeError`` stays one). The backend itself fails with :class:`BackendError`
  subclasses: :class:`WorkerDiedError` when the process (or server) computing the job went away.
  After that, :meth:`ComputeBackend.restart` (or simply the next job) starts afresh.
* **One job at a time** per backend instance: a second job waits (cancellable) for the first.

A new backend (say a remote server) implements:

* :meth:`list_models`: the models it can run, as objects that satisfy
  :class:`~napari_medvision.core.models.interface.Model` (name, task, labels...);
* :meth:`run_model` and :meth:`finetune`: a job generator as above (upload the volume, poll the
  server's progress, download the result as the core result objects);
* :meth:`cancel` and :meth:`close`; optionally :meth:`restart`, :meth:`warm_up` and :meth:`run`
  (named core functions: a server that offers none raises :class:`BackendError`).

A named function (for :meth:`run`) is ``"package.module:function"`` inside ``napari_medvision``;
it may return a value or be a generator (progress, then the result); its arguments may hold numpy
arrays and :class:`~napari_medvision.core.volume.Volume` objects (a worker process gets them through
shared memory, never as pickled copies).
"""

from __future__ import annotations

import importlib
import threading
from abc import ABC, abstractmethod
from typing import Any, Callable, Generator

from ..errors import CancelledError, MedvisionError

#: A running job: yields progress items, returns the result.
Job = Generator[Any, None, Any]

#: The longest a cancelled job may go on computing (seconds) before a worker process is ended.
CANCEL_SECONDS = 1.0

#: The named core functions behind :meth:`ComputeBackend.run_model` and :meth:`ComputeBackend.finetune`.
RUN_MODEL = "napari_medvision.core.inference.run:run_model"
FINETUNE = "napari_medvision.core.training.finetune:finetune"


class BackendError(MedvisionError):
    """The compute backend itself failed (not the model or the data)."""


class WorkerDiedError(BackendError):
    """The process (or server) computing a job went away in the middle of it."""


class ComputeBackend(ABC):
    """Where models run and fine-tune; see the module docstring for the conventions."""

    #: Shown to the user ("local worker", "server http://...").
    name = "compute backend"

    @abstractmethod
    def list_models(self) -> list:
        """The models this backend can run (objects satisfying ``core.models.interface.Model``)."""

    @abstractmethod
    def run(self, function: str, *args, **kwargs) -> Job:
        """A job running the named core function ``"package.module:function"`` on these arguments.

        Raises (when iterated):
            BackendError: the backend cannot run that function.
        """

    def run_model(self, model, volume, **options) -> Job:
        """A job running ``model`` on ``volume`` (a Volume, or a list of them: one per input channel).

        ``options`` are the engines' per-run settings (``device``, ``overlap``, ``sw_batch_size``,
        ``tta``, ``keep_probabilities``, ``uncertainty``, ``min_component_mm3``, ``score_threshold``,
        ``explain``...; see ``core.inference.run.run_model``). The job returns the task's result object.
        """
        return self.run(RUN_MODEL, model, volume, **options)

    def finetune(self, model, store, versions, settings=None, **kwargs) -> Job:
        """A job fine-tuning ``model`` on a case store, writing a new version into ``versions``.

        Yields ``TrainStep`` items (epoch, step, loss, validation Dice) and set-up text; returns a
        ``FinetuneResult`` (see ``core.training.finetune.finetune``).
        """
        return self.run(FINETUNE, model, store, versions, settings, **kwargs)

    @abstractmethod
    def cancel(self) -> None:
        """Stop the current job (if any) within :data:`CANCEL_SECONDS`; safe from any thread."""

    @abstractmethod
    def close(self) -> None:
        """Stop the current job and release the backend's resources (processes, connections)."""

    def restart(self) -> None:
        """Start afresh after a :class:`WorkerDiedError` (the next job also does it by itself)."""

    def warm_up(self) -> None:
        """Start what the first job needs (process, imports, connection) in the background."""

    @property
    def busy(self) -> bool:
        """Whether a job is running now."""
        return False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def resolve(function: str) -> Callable:
    """The callable named ``"package.module:function"``; only napari_medvision's own functions.

    Raises:
        BackendError: not a napari_medvision function, or no such function.
    """
    module_name, _, attribute = function.partition(":")
    if not attribute or not (module_name == "napari_medvision" or module_name.startswith("napari_medvision.")):
        raise BackendError(f"'{function}' is not a napari_medvision function ('package.module:function')")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise BackendError(f"no function '{function}': {exc}") from exc


def drive(job: Job, on_progress: Callable[[Any], None] | None = None,
          cancel: threading.Event | None = None) -> Any:
    """Run ``job`` to its end on the calling thread; its result.

    Args:
        on_progress: called with each progress item.
        cancel: when set (from another thread), the job is closed at its next progress item.

    Raises:
        CancelledError: ``cancel`` was set.
    """
    while True:
        try:
            item = next(job)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(item)
        if cancel is not None and cancel.is_set():
            job.close()
            raise CancelledError("cancelled: nothing was changed")
