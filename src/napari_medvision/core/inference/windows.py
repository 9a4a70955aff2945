"""Run a MONAI inferer window by window with progress, cancel and GPU out-of-memory fallback.

The inferer runs in a helper thread; the generator polls it, yields
:class:`Progress` a few times a second, and when it is closed (the user
cancelled) the next window raises and the thread ends before the generator does.
A Ctrl-C (KeyboardInterrupt in the polling thread) stops the helper at its next
window too, but the caller waits for that only briefly: it is never held until
the run ends (it used to be, by the thread pool joining its worker).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import math
import threading
from typing import Callable, Generator, Sequence

import torch
from monai.inferers import SlidingWindowInferer

from ..errors import CancelledError, ModelError
from ..priority import background_priority
from .progress import Progress

log = logging.getLogger(__name__)
_POLL_SECONDS = 0.05
#: How long an interrupted caller waits for the current window to end (a clean stop) before leaving.
_GRACE_SECONDS = 1.5


def count_windows(image_shape: Sequence[int], roi_size: Sequence[int], overlap: float) -> int:
    """Windows MONAI's sliding window visits for a spatial ``image_shape``."""
    total = 1
    for size, roi in zip(image_shape, roi_size):
        roi = size if roi is None or roi <= 0 else min(roi, size)
        if size <= roi:
            continue
        interval = max(int(roi * (1 - overlap)), 1)
        total *= math.ceil((size - roi) / interval) + 1
    return total


def autocast(device: torch.device, enabled: bool):
    """Mixed precision on CUDA only (bf16 on this CPU class is 27x slower, see DESIGN.md)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def for_this_run(inferer, **settings):
    """A new sliding-window inferer: ``inferer``'s class and parameters, ``settings`` (None: keep) replacing some.

    A built model is cached and shared by every run (and thread), so a run's overlap, windows per
    batch, blend mode or devices go into an inferer of its own; ``inferer`` itself never changes.
    Anything that is not a ``SlidingWindowInferer`` is returned as it is (it has no such settings).
    """
    if not isinstance(inferer, SlidingWindowInferer):
        return inferer
    params = {name: getattr(inferer, name) for name in _parameters(type(inferer)) if hasattr(inferer, name)}
    params["roi_size"] = getattr(inferer, "orig_roi_size", inferer.roi_size)  # SliceInferer rewrites roi_size
    params.update({key: value for key, value in settings.items() if value is not None})
    same_weights = params["mode"] == inferer.mode and params["sigma_scale"] == inferer.sigma_scale
    cached = getattr(inferer, "roi_weight_map", None)
    try:
        fresh = type(inferer)(**params, cache_roi_weight_map=cached is not None and not same_weights)
    except TypeError:  # a subclass whose constructor takes other arguments: a shallow copy then
        fresh = copy.copy(inferer)
        for key, value in params.items():
            setattr(fresh, key, value)
        fresh.roi_weight_map = None
    if same_weights and cached is not None:
        fresh.roi_weight_map = cached  # the window weights of the same mode and size, computed once
    return fresh


def _parameters(kind: type) -> list[str]:
    """Constructor arguments of a ``SlidingWindowInferer`` class (a subclass's own, then the base's)."""
    names = []
    for cls in (kind, SlidingWindowInferer):
        for name, p in inspect.signature(cls.__init__).parameters.items():
            if p.kind is p.POSITIONAL_OR_KEYWORD and name not in ("self", "cache_roi_weight_map", *names):
                names.append(name)
    return names


def infer(inferer, inputs: torch.Tensor, network: Callable, device: torch.device, *, amp: bool = True,
          label: str = "inference", cpu_network: Callable[[], Callable] | None = None,
          ) -> Generator[Progress, None, torch.Tensor]:
    """``inferer(inputs, network)`` with progress; on CUDA OOM retry smaller, then stitch on CPU.

    The retries run inferers of their own (:func:`for_this_run`): ``inferer`` is left as it was,
    so the next run starts from the bundle's settings again.

    Args:
        inferer: a MONAI inferer (``SlidingWindowInferer`` reports per window) or None.
        inputs: ``(B, C, *spatial)``.
        cpu_network: gives the network on the CPU, for the last resort after a GPU out-of-memory
            (the GPU network is cached and stays where it is); without it that case raises.

    Returns:
        The network output for ``inputs`` (on the CPU for stitched runs).

    Raises:
        ModelError: the GPU ran out of memory and no ``cpu_network`` was given.
    """
    attempts = [{}]
    if isinstance(inferer, SlidingWindowInferer):
        # windows on the model's device, stitching there too (unless the bundle says otherwise)
        attempts = [{"sw_device": inferer.sw_device or device, "device": inferer.device or device}]
        if device.type == "cuda":
            attempts += [{**attempts[0], "sw_batch_size": 1},
                         {**attempts[0], "sw_batch_size": 1, "device": torch.device("cpu")}]
    for number, overrides in enumerate(attempts):
        try:
            return (yield from _run_once(for_this_run(inferer, **overrides), inputs, network, device, amp, label))
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if number + 1 == len(attempts):
                break
            note = ("GPU out of memory: retrying one window at a time" if number == 0
                    else "GPU out of memory: retrying with stitching on the CPU")
            log.warning(note)
            yield Progress(0, 1, note)
    if cpu_network is None:
        raise ModelError("the GPU ran out of memory for this image; run it on the CPU (device 'cpu')")
    yield Progress(0, 1, "GPU out of memory: running on the CPU")
    cpu = torch.device("cpu")
    return (yield from _run_once(for_this_run(inferer, sw_device=cpu, device=cpu), inputs.cpu(), cpu_network(),
                                 cpu, False, label))


def _run_once(inferer, inputs, network, device, amp, label):
    stop = threading.Event()
    done = [0]
    if isinstance(inferer, SlidingWindowInferer):
        windows = count_windows(inputs.shape[2:], inferer.roi_size, inferer.overlap)
        total = math.ceil(windows / max(inferer.sw_batch_size, 1)) * inputs.shape[0]
    else:
        total = 1

    def predictor(batch, *args, **kwargs):
        if stop.is_set():
            raise CancelledError("cancelled")
        with torch.no_grad(), autocast(device, amp):
            out = network(batch, *args, **kwargs)
        done[0] += 1
        return out

    def work():
        with background_priority(), torch.no_grad():
            data = inputs.to(device) if not isinstance(inferer, SlidingWindowInferer) else inputs
            out = inferer(data, predictor) if inferer is not None else predictor(data.to(device))
            return out.float() if isinstance(out, torch.Tensor) else out

    worker = _Worker(work)
    worker.start()
    try:
        while not worker.done.wait(_POLL_SECONDS):
            yield Progress(min(done[0], total), total, label)
    except GeneratorExit:
        # Closed from another thread (a widget's cancel): the network is shared with the next run,
        # so wait for the current window to end before the generator does.
        stop.set()
        worker.done.wait()
        raise
    except BaseException:
        # Ctrl-C (KeyboardInterrupt) or any error in the caller: the worker stops at its next
        # window; the caller waits for that a moment at most (the worker is a daemon thread).
        stop.set()
        if not worker.done.wait(_GRACE_SECONDS):
            log.info("the sliding-window thread is still in a window; not waiting for it")
        raise
    result = worker.result()
    yield Progress(total, total, label)
    return result


class _Worker(threading.Thread):
    """Runs ``function`` once; ``done`` is set when it returned or raised.

    A daemon thread rather than a ``ThreadPoolExecutor`` worker: the interpreter joins executor
    threads at exit, so a Ctrl-C during a long forward pass would still wait for the pass to end.
    """

    def __init__(self, function: Callable):
        super().__init__(name="medvision-infer", daemon=True)
        self._function = function
        self._outcome: tuple[bool, object] | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self._outcome = (True, self._function())
        except BaseException as exc:  # re-raised in the caller by result()
            self._outcome = (False, exc)
        finally:
            self.done.set()

    def result(self):
        ok, value = self._outcome
        if not ok:
            raise value
        return value
