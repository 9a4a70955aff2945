"""Fewer repaints while a job reports progress: the latest value at most every few hundred ms.

Every widget change repaints the window; where napari draws with software OpenGL (no GPU, remote
desktops, Xvfb) the whole window is composed again on the CPU, 10-20 ms of it each time, and
while the compute worker keeps every core busy that becomes the GUI thread's longest stall. A
progress bar or a plot needs no more than a few updates a second to look live.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from qtpy.QtCore import QObject, QTimer

T = TypeVar("T")
INTERVAL_MS = 250
_NOTHING = object()


class Coalesced(Generic[T]):
    """``apply(value)`` for the first value at once, then for the latest value once per interval.

    Call :meth:`flush` where the last value must show now (a job's end): it applies what is pending.
    """

    def __init__(self, apply: Callable[[T], None], interval_ms: int = INTERVAL_MS, parent: QObject | None = None):
        self._apply = apply
        self._pending = _NOTHING
        self._timer = QTimer(parent)
        self._timer.setSingleShot(True)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def __call__(self, value: T) -> None:
        if self._timer.isActive():
            self._pending = value   # shown at the next tick; an older pending value is dropped
            return
        self._apply(value)
        self._timer.start()

    def flush(self) -> None:
        """Apply the pending value now (if any) and end the wait."""
        self._timer.stop()
        pending, self._pending = self._pending, _NOTHING
        if pending is not _NOTHING:
            self._apply(pending)

    def _tick(self) -> None:
        pending, self._pending = self._pending, _NOTHING
        if pending is not _NOTHING:
            self._apply(pending)
            self._timer.start()


def set_progress(bar, value: int, maximum: int | None = None, text: str | None = None) -> None:
    """Set a QProgressBar without its own immediate repaint: ``setValue`` repaints the bar at once
    (a whole-window composition of its own with software OpenGL); this schedules it with the
    window's next repaint instead, together with whatever else changed (a plot, a status line)."""
    bar.setUpdatesEnabled(False)
    try:
        if maximum is not None:
            bar.setMaximum(maximum)
        bar.setValue(value)
        if text is not None:
            bar.setFormat(text)
    finally:
        bar.setUpdatesEnabled(True)   # schedules an ordinary update()
