"""The compute worker process: runs named core functions for a :class:`~.local_worker.WorkerBackend`.

Started with the ``spawn`` method (a fresh interpreter, never a fork of a process running Qt or
torch threads). It pays the engines' imports once, says ``ready``, then serves jobs one at a time
until told to close or until its parent goes away. Messages on ``connection`` (parent -> worker):
``("run", job_id, function, packed_arguments, environment)``, ``("close",)``; worker -> parent:
``("ready", pid)``, ``("progress", job_id, packed_item)``, ``("done", job_id, packed_result)``,
``("error", job_id, description)``, ``("cancelled", job_id)``. A job id on ``control`` cancels that
job; it is checked after every step of the job's generator.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
from pathlib import Path

from ..deferred_imports import deferred
from . import transfer
from .base import resolve
from .remote_errors import describe

log = logging.getLogger(__name__)
_ENV_PREFIX = "MEDVISION_"


#: What a worker imports before it says ``ready``: the engines of inference and fine-tuning.
ENGINES = ("napari_medvision.core.inference", "napari_medvision.core.training.finetune",
           "napari_medvision.core.models.bundle:warm_up")


def serve(connection, control, folder: str, warm: tuple[str, ...] = ENGINES) -> None:
    """The worker's main loop (the target of the worker process).

    Args:
        warm: modules to import (``"module"``) and functions to call (``"module:function"``)
            before the first job: what its jobs will need, paid once.
    """
    logging.basicConfig(level=logging.WARNING, format="medvision worker: %(levelname)s %(name)s: %(message)s")
    _lower_priority()
    with deferred():  # MONAI's optional packages no job here uses are imported on first use
        _warm_up(warm)
    connection.send(("ready", os.getpid()))
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return   # the viewer went away
        if message[0] != "run":
            return
        _, job_id, function, packed, environment = message
        try:
            _run(connection, control, Path(folder), job_id, function, packed, environment)
        except (BrokenPipeError, OSError):
            return


def _run(connection, control, folder: Path, job_id: int, function: str, packed, environment: dict) -> None:
    _use_environment(environment)
    try:
        args, kwargs = transfer.unpack(packed)
        outcome = resolve(function)(*args, **kwargs)
        if inspect.isgenerator(outcome):
            steps, outcome = outcome, None
            while True:
                if _cancelled(control, job_id):
                    steps.close()   # the engine's own clean-up (a fine-tune may keep its best epoch)
                    connection.send(("cancelled", job_id))
                    return
                try:
                    item = next(steps)
                except StopIteration as stop:
                    outcome = stop.value
                    break
                connection.send(("progress", job_id, transfer.pack(item, folder)))
        result = transfer.pack(outcome, folder)
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller as itself
        connection.send(("error", job_id, describe(exc)))
        return
    connection.send(("done", job_id, result))


def _cancelled(control, job_id: int) -> bool:
    """Whether a cancel of this job has come (cancels of earlier jobs, come too late, are dropped)."""
    cancelled = False
    while control.poll():
        cancelled = control.recv() == job_id or cancelled
    return cancelled


def _use_environment(environment: dict) -> None:
    """The viewer's ``MEDVISION_*`` settings (trust file, model folders) as they are for this job."""
    for name in [n for n in os.environ if n.startswith(_ENV_PREFIX) and n not in environment]:
        del os.environ[name]
    os.environ.update(environment)


def _lower_priority() -> None:
    """Below the viewer, for the whole process: threads started later (torch's, OpenVINO's) inherit
    the nice level and the long time slices (:func:`~..priority.request_long_slices`)."""
    from ..priority import WORKER_NICE, request_long_slices

    if hasattr(os, "nice"):
        try:
            os.nice(int(os.environ.get("MEDVISION_WORKER_NICE", WORKER_NICE)))
        except OSError:
            pass
    if os.environ.get("MEDVISION_WORKER_SLICES", "long") != "default":
        request_long_slices()


def _warm_up(warm: tuple[str, ...]) -> None:
    """The jobs' imports (and MONAI's component scan, for the engines) before the first job asks for them."""
    for name in warm:
        if ":" in name:
            resolve(name)()
        else:
            importlib.import_module(name)
