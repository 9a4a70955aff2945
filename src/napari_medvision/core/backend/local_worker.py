"""A warm worker process on this machine as the backend: the viewer's process never computes.

Inference and fine-tuning in the viewer's own process share its interpreter lock with the GUI
thread (the GUI stalls for hundreds of ms when another program competes for the CPU), keep what a
run allocated, and die with a model that crashes. Here they run in one worker process, started
with ``spawn`` on the first job (or :meth:`WorkerBackend.warm_up`) and kept for the next ones, so
imports and the built-model cache are paid once. Arrays travel through memory-mapped files
(:mod:`.transfer`); progress, results and errors through a pipe (protocol: :mod:`.worker_main`).

Cancel asks the worker to stop at its next step; a worker still busy after
:data:`~.base.CANCEL_SECONDS` is ended, and the next job starts a fresh one. A worker that dies
(crash, out of memory, killed) fails the job with :class:`~.base.WorkerDiedError`; the caller's
data is untouched, since the worker only ever had copies.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import types
from multiprocessing.connection import wait

from ..errors import CancelledError
from . import transfer
from .base import CANCEL_SECONDS, FINETUNE, ComputeBackend, Job, WorkerDiedError
from .remote_errors import rebuild
from .worker_main import ENGINES, serve

log = logging.getLogger(__name__)
#: How long a fresh worker may take to import the engines (seconds; a contended laptop is slow).
START_SECONDS = 300.0
#: How long a cancelled fine-tune that keeps its best epoch may take to write it (seconds).
KEEP_BEST_SECONDS = 30.0
_TERMINAL = ("done", "error", "cancelled")


class WorkerBackend(ComputeBackend):
    """Jobs run in a worker process of this machine, one at a time (see the module docstring)."""

    name = "local worker process"

    def __init__(self, cancel_seconds: float = CANCEL_SECONDS, warm: tuple[str, ...] = ENGINES):
        """
        Args:
            cancel_seconds: how long a cancelled job may go on before the worker is ended.
            warm: what the worker imports (``"module"``) or calls (``"module:function"``) before
                its first job (default: the inference and fine-tuning engines).
        """
        self.cancel_seconds = cancel_seconds
        self.warm = tuple(warm)
        self._context = multiprocessing.get_context("spawn")
        self._process = None
        self._connection = None
        self._control = None
        self._folder = None
        self._ready = False
        self._slot = threading.Lock()        # one job at a time
        self._state = threading.RLock()      # process, current job, cancel state
        self._job_id = 0
        self._current: int | None = None
        self._cancelled: set[int] = set()
        self._grace = cancel_seconds
        self._idle = threading.Condition(self._state)   # notified when a job ends
        atexit.register(self.close)

    # --- ComputeBackend ---------------------------------------------------------------------------
    def list_models(self) -> list:
        from ..models import list_models

        return list_models()   # read from files here: listing runs no model code

    def run(self, function: str, *args, **kwargs) -> Job:
        return self._job(function, args, kwargs, self.cancel_seconds)

    def finetune(self, model, store, versions, settings=None, **kwargs) -> Job:
        # Keeping the best epoch on Cancel writes a version after the cancel: give it time to.
        grace = KEEP_BEST_SECONDS if getattr(settings, "keep_best_on_cancel", False) else self.cancel_seconds
        return self._job(FINETUNE, (model, store, versions, settings), kwargs, grace)

    def cancel(self) -> None:
        with self._state:
            job = self._current
            if job is None or job in self._cancelled:
                return
            self._cancelled.add(job)
            _send(self._control, job)
        timer = threading.Timer(self._grace, self._end_if_still_running, args=(job,))
        timer.daemon = True
        timer.start()

    def close(self) -> None:
        """Cancel the current job (it ends with ``CancelledError``), give it :data:`~.base.CANCEL_SECONDS`
        to stop, end the worker (terminate if it will not exit) and remove the transfer files."""
        with self._state:
            process, connection, job = self._process, self._connection, self._current
            if process is None:
                return
            if job is not None:
                self._cancelled.add(job)
                _send(self._control, job)
                self._idle.wait_for(lambda: self._current != job, timeout=CANCEL_SECONDS)
            still_running = self._current == job and job is not None
        if still_running:   # a job deaf to its cancel (one long native call): end the worker under it
            _end(process, grace=0.0)
            with self._state:
                self._idle.wait_for(lambda: self._current != job, timeout=2.0)
        with self._state:
            if self._process is process:
                self._forget_process(connection)
        _end(process, grace=1.0)

    def restart(self) -> None:
        with self._state:
            process = self._process
            self._forget_process()
        if process is not None:
            _end(process, grace=0.0)
        self.warm_up()

    def warm_up(self) -> None:
        with self._state:
            if self._process is not None and not self._process.is_alive():
                self._forget_process()   # ended after a cancel, or died: start afresh
            if self._process is None:
                self._start()

    @property
    def busy(self) -> bool:
        return self._current is not None

    @property
    def pid(self) -> int | None:
        """The worker process's id (None before it starts)."""
        process = self._process
        return process.pid if process is not None else None

    # --- the job ----------------------------------------------------------------------------------
    def _job(self, function: str, args: tuple, kwargs: dict, grace: float) -> Job:
        with self._slot:
            with self._state:
                self._job_id += 1
                job = self._current = self._job_id
                self._grace = grace
            packed = None
            try:
                self._wait_until_ready(job)
                if job in self._cancelled:   # cancelled while the worker started: nothing to send
                    raise CancelledError("cancelled: nothing was changed")
                packed = transfer.pack((args, kwargs), self._folder)
                environment = {k: v for k, v in os.environ.items() if k.startswith("MEDVISION_")}
                with self._state:
                    connection, process = self._connection, self._process
                if connection is None:   # closed meanwhile
                    raise CancelledError("cancelled: nothing was changed")
                try:
                    connection.send(("run", job, function, packed, environment))
                except (OSError, ValueError):   # the worker went away just now
                    raise self._died(job, process, starting=False) from None
                try:
                    while True:
                        message = self._receive(job)
                        if message[0] == "progress":
                            yield transfer.unpack(message[2])
                        elif message[0] == "done":
                            return transfer.unpack(message[2])
                        elif message[0] == "error":
                            raise rebuild(message[2])
                        elif message[0] == "cancelled":
                            raise CancelledError("cancelled: nothing was changed")
                except GeneratorExit:
                    self._stop(job)
                    raise
            finally:
                transfer.discard(packed)
                with self._state:
                    self._current = None
                    self._cancelled.discard(job)
                    self._idle.notify_all()

    def _wait_until_ready(self, job: int) -> None:
        self.warm_up()
        if self._ready:
            return
        message = self._receive(job, timeout=START_SECONDS, starting=True)
        if message[0] != "ready":
            raise WorkerDiedError(f"the compute worker sent {message[0]!r} instead of starting; restart it")
        self._ready = True

    def _receive(self, job: int, timeout: float | None = None, starting: bool = False):
        """The next message of ``job`` (stale ones from an earlier, cancelled job are dropped)."""
        connection, process = self._connection, self._process
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0)
            try:
                if not wait([connection, process.sentinel], left) and left == 0:
                    _end(process, grace=0.0)
                    raise WorkerDiedError(f"the compute worker did not start within {timeout:.0f} s; "
                                          "close other programs and run again")
                message = connection.recv() if connection.poll() else None
            except (EOFError, OSError, ValueError):   # the worker went, or close() closed the pipe
                break
            if message is not None:
                if message[0] == "ready" or message[1] == job:
                    return message
                _discard_message(message)
                continue
            if not process.is_alive():
                break
        raise self._died(job, process, starting)

    def _died(self, job: int, process, starting: bool) -> Exception:
        process.join(1.0)
        with self._state:
            if self._process is process:
                self._forget_process()
            if job in self._cancelled:
                return CancelledError("cancelled: nothing was changed")
        code = process.exitcode
        how = (f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0
               else f"exit code {code}")
        verb = "could not start" if starting else "stopped in the middle of the run"
        return WorkerDiedError(f"the compute worker {verb} ({how}: out of memory or a crash in a native "
                               "library); nothing in the viewer was changed: restart the worker and run again")

    def _stop(self, job: int) -> None:
        """The job was closed by its caller: cancel it, wait for its end, or end the worker."""
        self.cancel()
        deadline = time.monotonic() + self._grace
        connection, process = self._connection, self._process
        if connection is None or process is None:
            return
        while time.monotonic() < deadline:
            if not wait([connection, process.sentinel], max(deadline - time.monotonic(), 0)):
                break
            try:
                message = connection.recv() if connection.poll() else None
            except (EOFError, OSError):
                return
            if message is None:
                return   # the worker has ended
            _discard_message(message)
            if message[0] in _TERMINAL and message[1] == job:
                return
        self._end_if_still_running(job)

    # --- the process ------------------------------------------------------------------------------
    def _start(self) -> None:
        self._folder = transfer.transfer_folder()
        ours, theirs = self._context.Pipe()
        control_in, control_out = self._context.Pipe(duplex=False)
        process = self._context.Process(target=serve, args=(theirs, control_in, str(self._folder), self.warm),
                                        name="medvision-compute-worker")
        with _main_script_hidden():
            process.start()
        theirs.close()
        control_in.close()
        self._process, self._connection, self._control, self._ready = process, ours, control_out, False
        log.info("started compute worker %s", process.pid)

    def _forget_process(self, closing=None) -> None:
        """Drop the worker's pipes and transfer folder (``closing``: the connection, told to close first)."""
        if closing is not None:
            _send(closing, ("close",))
        for end in (self._connection, self._control):
            if end is not None:
                end.close()
        transfer.remove_folder(self._folder)
        self._process = self._connection = self._control = self._folder = None
        self._ready = False

    def _end_if_still_running(self, job: int) -> None:
        with self._state:
            if self._current != job or self._process is None or not self._ready:
                return   # ended already, or still starting (the job then stops before it is sent)
            process = self._process
        log.info("job %s did not stop within %.1f s of its cancel: ending the worker", job, self._grace)
        _end(process, grace=0.0)


@contextlib.contextmanager
def _main_script_hidden():
    """Start the worker without it re-running the viewer's main script.

    ``spawn`` runs the parent's ``__main__`` again in the child, so that functions defined there
    unpickle. The worker needs none (its code is this package's), and a napari script without an
    ``if __name__ == "__main__":`` guard (common: ``napari.run()`` at the bottom) would open a
    second viewer inside the worker. The preparation data is taken during ``start()``, from
    ``sys.modules["__main__"]``: an empty module stands in for those few milliseconds.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _end(process, grace: float) -> None:
    """Let ``process`` exit within ``grace`` seconds, else terminate it, else kill it."""
    process.join(grace)
    if process.is_alive():
        process.terminate()
        process.join(1.0)
    if process.is_alive():
        process.kill()
        process.join(1.0)


def _send(connection, message) -> None:
    """Send when the pipe is still open (a worker that went away needs no message)."""
    if connection is not None:
        try:
            connection.send(message)
        except (OSError, ValueError):
            pass


def _discard_message(message) -> None:
    if message[0] in ("progress", "done"):
        transfer.discard(message[2])
