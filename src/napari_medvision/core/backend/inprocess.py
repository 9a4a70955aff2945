"""The caller's own process as a backend: the CLI's path, and the fallback where no worker can start."""

from __future__ import annotations

import inspect
import threading

from ..errors import CancelledError
from .base import ComputeBackend, Job, resolve


class InProcessBackend(ComputeBackend):
    """Jobs run on the thread that iterates them, in this process (the engines' generators as they are).

    Cancel takes effect at the engine's next progress item (between sliding windows or training steps).
    """

    name = "this process"

    def __init__(self):
        self._cancel = threading.Event()
        self._running = 0

    def list_models(self) -> list:
        from ..models import list_models

        return list_models()

    def run(self, function: str, *args, **kwargs) -> Job:
        self._cancel.clear()
        return self._job(function, args, kwargs)

    def _job(self, function: str, args: tuple, kwargs: dict) -> Job:
        self._running += 1
        try:
            outcome = resolve(function)(*args, **kwargs)
            if not inspect.isgenerator(outcome):
                return outcome
            try:
                while True:
                    if self._cancel.is_set():
                        raise CancelledError("cancelled: nothing was changed")
                    try:
                        item = next(outcome)
                    except StopIteration as stop:
                        return stop.value
                    yield item
            finally:
                outcome.close()   # a cancel or a closed job: the engine's own clean-up runs now
        finally:
            self._running -= 1

    def cancel(self) -> None:
        self._cancel.set()

    def close(self) -> None:
        self.cancel()

    @property
    def busy(self) -> bool:
        return self._running > 0
