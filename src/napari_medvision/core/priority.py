"""Background compute at a lower CPU priority than the viewer.

Inference windows and training steps keep every core busy; the viewer's own work (drawing
the canvas, software OpenGL on machines without a GPU) then waits for a core and the GUI
stutters. A thread that computes in the background lowers its own priority (Linux: per-thread
nice, 5 above the main thread's); the torch threads it starts inherit it. The compute still
gets every idle cycle, and the viewer goes first when it needs one. Elsewhere: no-op.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

NICE = 5


@contextlib.contextmanager
def background_priority():
    """Run the body with the calling thread at the background priority, then restore it where allowed
    (raising a priority back needs privileges most users lack; the thread then stays lower, which
    only ever affects background work)."""
    if not sys.platform.startswith("linux"):
        yield
        return
    tid = threading.get_native_id()
    try:
        before = os.getpriority(os.PRIO_PROCESS, tid)
        target = min(max(before, os.getpriority(os.PRIO_PROCESS, os.getpid()) + NICE), 19)
        if target != before:
            os.setpriority(os.PRIO_PROCESS, tid, target)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, before)
