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
import ctypes
import os
import platform
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Generator, TypeVar

NICE = 5
#: The compute worker process's nice level above the viewer's (``$MEDVISION_WORKER_NICE`` overrides it).
#: Measured (benchmarks/responsiveness.py, quiet 2 cores): 10 gives the same GUI stalls as 5 but the
#: warm run beside a CPU-bound program becomes 1.17x in-process (goal <= 1.1x): 5 it is.
WORKER_NICE = NICE
#: The time slice the compute worker asks for (ms; the kernel's default is 0.75-3 ms).
WORKER_SLICE_MS = 20
_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}   # syscall numbers (Linux)
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


class _SchedAttr(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("policy", ctypes.c_uint32), ("flags", ctypes.c_uint64),
                ("nice", ctypes.c_int32), ("priority", ctypes.c_uint32), ("runtime", ctypes.c_uint64),
                ("deadline", ctypes.c_uint64), ("period", ctypes.c_uint64)]


def request_long_slices(milliseconds: int = WORKER_SLICE_MS) -> bool:
    """Ask the kernel for long time slices for the calling thread and the threads it starts later.

    Linux's EEVDF scheduler (6.6+; a task's own slice request, 6.12+) lets a waking task with a
    shorter slice preempt the running one at once. The viewer's drawing threads (with software
    OpenGL: the GUI thread, Mesa's llvmpipe threads, the X server) wake, work a few ms and wait for
    each other a dozen times per repaint; with the worker on every core at the default slice each
    of those wake-ups could wait for a worker slice to end (a 40-70 ms repaint on 2 cores). With a
    long slice the worker is preempted at every wake-up, and its share of the CPU (its nice level)
    is unchanged. Elsewhere, or on older kernels, nothing changes. Returns whether the kernel took it.
    """
    number = _SCHED_SETATTR.get(platform.machine())
    if not sys.platform.startswith("linux") or number is None:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        attr = _SchedAttr(size=ctypes.sizeof(_SchedAttr), policy=os.SCHED_OTHER, nice=os.getpriority(
            os.PRIO_PROCESS, threading.get_native_id()), runtime=milliseconds * 1_000_000)
        return libc.syscall(number, 0, ctypes.byref(attr), 0) == 0
    except (OSError, AttributeError):
        return False


def thread_scheduling() -> dict:
    """The calling thread's nice level and time slice (ns; None where the kernel does not say)."""
    tid = threading.get_native_id()
    slice_ns = None
    with contextlib.suppress(OSError):
        with open(f"/proc/self/task/{tid}/sched") as stream:
            slice_ns = next((int(line.split(":")[1]) for line in stream if line.startswith("se.slice")), None)
    return {"nice": os.getpriority(os.PRIO_PROCESS, tid) if hasattr(os, "getpriority") else 0, "slice_ns": slice_ns}
