"""Run a MONAI inferer window by window with progress, cancel and GPU out-of-memory fallback.

The inferer runs in a helper thread; the generator polls it, yields
:class:`Progress` a few times a second, and when it is closed (the user
cancelled) the next window raises and the thread ends before the generator does.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable, Generator, Sequence

import torch
from monai.inferers import SlidingWindowInferer

from ..errors import CancelledError
from ..priority import background_priority
from .progress import Progress

log = logging.getLogger(__name__)
_POLL_SECONDS = 0.05


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


def infer(inferer, inputs: torch.Tensor, network: Callable, device: torch.device, *, amp: bool = True,
          label: str = "inference") -> Generator[Progress, None, torch.Tensor]:
    """``inferer(inputs, network)`` with progress; on CUDA OOM retry smaller, then stitch on CPU.

    Args:
        inferer: a MONAI inferer (``SlidingWindowInferer`` reports per window) or None.
        inputs: ``(B, C, *spatial)``.

    Returns:
        The network output for ``inputs`` (on the CPU for stitched runs).
    """
    if isinstance(inferer, SlidingWindowInferer):
        inferer.sw_device = inferer.sw_device or device   # windows on the model's device
        inferer.device = inferer.device or device         # stitching there too, unless moved below
    attempts = [{}]
    if device.type == "cuda" and isinstance(inferer, SlidingWindowInferer):
        attempts += [{"sw_batch_size": 1}, {"sw_batch_size": 1, "device": torch.device("cpu")}]
    for number, overrides in enumerate(attempts):
        for key, value in overrides.items():
            setattr(inferer, key, value)
        try:
            return (yield from _run_once(inferer, inputs, network, device, amp, label))
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if number + 1 == len(attempts):
                break
            nxt = attempts[number + 1]
            note = ("GPU out of memory: retrying one window at a time" if "device" not in nxt
                    else "GPU out of memory: retrying with stitching on the CPU")
            log.warning(note)
            yield Progress(0, 1, note)
    network_cpu = network.to("cpu") if hasattr(network, "to") else network
    yield Progress(0, 1, "GPU out of memory: running on the CPU")
    return (yield from _run_once(inferer, inputs.cpu(), network_cpu, torch.device("cpu"), False, label))


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

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="medvision-infer") as pool:
        future = pool.submit(work)
        try:
            while True:
                try:
                    result = future.result(timeout=_POLL_SECONDS)
                    break
                except FutureTimeout:
                    yield Progress(min(done[0], total), total, label)
        except GeneratorExit:
            stop.set()
            raise
    yield Progress(total, total, label)
    return result
