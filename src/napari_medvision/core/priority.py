"""Background compute at a lower CPU priority than the viewer, on threads of our own.

Inference windows and training steps keep every core busy; the viewer's own work (drawing
the canvas, software OpenGL on machines without a GPU) then waits for a core and the GUI
stutters. A thread that computes in the background lowers its own priority (Linux: per-thread
nice, 5 above the main thread's); the torch threads it starts inherit it. The compute still
gets every idle cycle, and the viewer goes first when it needs one. Elsewhere: no-op.

Only threads we start are lowered: raising a priority back needs privileges most users lack,
so a borrowed thread (napari's or Qt's worker pool, the caller's) would stay lower for whoever
uses it next. :func:`on_own_thread` runs a generator's steps on a thread of its own that ends
with the run.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Generator, TypeVar

NICE = 5
Y = TypeVar("Y")
R = TypeVar("R")


@contextlib.contextmanager
def background_priority():
    """Run the body with the calling thread at the background priority, then restore it where allowed
    (raising a priority back needs privileges most users lack; the thread then stays lower). Use it
    only on a thread you started, which ends with your work (see the module docstring)."""
    before = _lower_this_thread()
    try:
        yield
    finally:
        if before is not None:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), before)


def on_own_thread(generator: Generator[Y, None, R]) -> Generator[Y, None, R]:
    """``generator``'s yields and return value, each step computed on a thread started for this run,
    at the background priority; the thread ends when the run does (finished, failed or closed).

    Closing the returned generator closes ``generator`` on that thread and waits for it.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="medvision-compute") as pool:
        pool.submit(_lower_this_thread).result()  # for good: the thread is ours and ends with the run
        try:
            while True:
                try:
                    value = pool.submit(next, generator).result()
                except StopIteration as stop:
                    return stop.value
                yield value
        finally:
            pool.submit(generator.close).result()


def _lower_this_thread() -> int | None:
    """Lower the calling thread to the background priority; its priority before (None: not changed)."""
    if not sys.platform.startswith("linux"):
        return None
    tid = threading.get_native_id()
    try:
        before = os.getpriority(os.PRIO_PROCESS, tid)
        target = min(max(before, os.getpriority(os.PRIO_PROCESS, os.getpid()) + NICE), 19)
        if target != before:
            os.setpriority(os.PRIO_PROCESS, tid, target)
    except OSError:
        return None
    return before
