"""The one way widgets run long work: a napari worker with progress and errors as notifications."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error

from ..core.errors import CancelledError, MedvisionError
from ..core.priority import on_own_thread

log = logging.getLogger(__name__)


class EngineFailure(MedvisionError):
    """A run failed inside torch or MONAI (message: the innermost cause)."""


def root_cause(exc: BaseException) -> str:
    """``Type: first line`` of the innermost exception in a chain (MONAI wraps the real error)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def report_error(exc: BaseException) -> None:
    """A user error as its one-line message; anything else with its type, details in the log."""
    if isinstance(exc, MedvisionError):
        show_error(_one_line(str(exc)))
    else:
        log.error("unexpected failure", exc_info=exc)
        show_error(f"napari-medvision: unexpected {type(exc).__name__}: {_one_line(str(exc))}")


def _one_line(text: str) -> str:
    """A notification is one line: libraries append paragraphs of advice (the log keeps them)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "failed"


def start_worker(function: Callable, *args, on_result: Callable | None = None, on_error: Callable | None = None,
                 on_finished: Callable | None = None, description: str = "Working", total: int | None = None,
                 **kwargs):
    """Run ``function(*args, **kwargs)`` in a thread; the result goes to ``on_result`` on the GUI thread.

    Every handler is connected before the thread starts, so none can miss a fast worker.
    ``function`` may be a generator: each yield advances a progress bar of ``total`` steps
    and is a point where ``worker.quit()`` stops it.
    """
    progress = {"desc": description}
    if total is not None:
        progress["total"] = total
    # An "errored" handler also stops superqt from re-raising into the Qt event loop.
    connect = {"errored": [report_error] + ([on_error] if on_error else [])}
    if on_result is not None:
        connect["returned"] = on_result
    if on_finished is not None:
        connect["finished"] = on_finished
    return create_worker(function, *args, _progress=progress, _connect=connect, **kwargs)


def start_engine(generator, *, on_result: Callable, on_progress: Callable, on_error: Callable | None = None,
                 on_finished: Callable | None = None, on_aborted: Callable | None = None):
    """Run an engine generator (see core/inference) in a worker.

    ``on_progress`` gets each :class:`Progress` on the GUI thread. ``worker.quit()``
    stops it at the next yield; the engine is then closed in the background so its
    compute ends after the current window without holding up the GUI. The engine's steps
    run on a thread of their own at a lower CPU priority, so the viewer gets a core first
    and napari's pooled worker thread keeps its priority (core/priority.py).
    """
    engine = on_own_thread(generator)

    def run():
        try:
            return (yield from engine)
        except RuntimeError as exc:
            # superqt's GeneratorWorker takes a RuntimeError for a deleted worker and ends
            # without "errored" or "finished"; torch and MONAI raise RuntimeError for real
            # failures, so pass those on as what they are.
            raise EngineFailure(root_cause(exc)) from exc

    def close_engine():
        threading.Thread(target=engine.close, name="medvision-cancel", daemon=True).start()

    failed = on_error or report_error

    def errored(exc):
        if isinstance(exc, CancelledError):   # a backend's cancel ends its job so: an abort, not a failure
            if on_aborted is not None:
                on_aborted()
            return
        failed(exc)

    connect = {"yielded": on_progress, "returned": on_result,
               "aborted": [close_engine] + ([on_aborted] if on_aborted else []), "errored": errored}
    if on_finished is not None:
        connect["finished"] = on_finished
    return create_worker(run, _connect=connect)  # starts after every handler is connected


_WARMED = threading.Event()


def warm_up_in_background() -> None:
    """Once per process, in a background thread, when a dock opens: first-use imports (MONAI's
    component scan, napari's result layer types) and the CUDA probe, so none of them stalls the
    GUI in the middle of a first run. Nothing process-wide is changed (the garbage collector is
    napari's and the user's: no ``gc.freeze``)."""
    if _WARMED.is_set():
        return
    _WARMED.set()
    # pint's unit registry (every napari layer's transform uses it) builds itself on first use and
    # not thread-safely: a layer made on the GUI thread while the warm-up thread builds it finds it
    # empty ("'pixel' is not defined"). Build it here first (0.2 s, once; free once a layer exists).
    import pint

    pint.get_application_registry().pixel  # noqa: B018 - the attribute access builds the registry
    threading.Thread(target=_warm_up, name="medvision-warm-up", daemon=True).start()


def _warm_up() -> None:
    import numpy as np
    from napari.layers import Labels, Shapes

    from ..core.models.bundle import warm_up

    warm_up()
    Labels(np.zeros((1, 2, 2), np.uint8), features={"index": [0], "name": ["x"]})
    Shapes([np.zeros((4, 3))], shape_type="rectangle", features={"label": ["x"], "score": [0.5]},
           text={"string": "{label} {score:.2f}"})
