"""Writes from the Fine-tune dock, off the GUI thread: adding a case and auto-saving edited labels.

Compressing a CT as NIfTI takes seconds, so the dock snapshots the layers on the GUI thread
(a copy of the label voxels: painting may go on) and writes in a worker. Each file is
written atomically (core/io/writer.py), so closing napari during a save leaves the previous
file, never half of one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from napari.layers import Labels

from ..core.errors import MedvisionError
from ..core.io import write_volume
from ..core.volume import Volume
from .._napari.layers import GEOMETRY_KEY, layer_volume
from .workers import report_error, start_worker


class BackgroundWrites:
    """The write workers in flight; each is kept until it has finished."""

    def __init__(self):
        self.workers: list = []

    @property
    def busy(self) -> bool:
        return bool(self.workers)

    def run(self, function: Callable, *args, on_result: Callable, description: str,
            on_error: Callable | None = None, **kwargs):
        """``function(*args, **kwargs)`` in a worker; ``on_result`` gets its result on the GUI thread
        (a failure is shown as a notification, then given to ``on_error``)."""
        job = {}

        def finished():
            if job["worker"] in self.workers:
                self.workers.remove(job["worker"])

        # "finished" is queued to the GUI thread, so it runs after job is filled.
        job["worker"] = worker = start_worker(function, *args, on_result=on_result, on_error=on_error,
                                              on_finished=finished, description=description, **kwargs)
        self.workers.append(worker)
        return worker


class LabelAutosave:
    """Which labels layers were edited since their last save, and saving them in a worker."""

    def __init__(self, writes: BackgroundWrites):
        self.writes = writes
        self.dirty: set[str] = set()
        self.last_written: list[Path] = []

    def watch(self, layers) -> None:
        """Follow brush strokes and data changes of every labels layer not yet followed."""
        for layer in layers:
            if isinstance(layer, Labels) and not getattr(layer, "_medvision_watched", False):
                layer.events.paint.connect(lambda _e, name=layer.name: self.dirty.add(name))
                layer.events.data.connect(lambda _e, name=layer.name: self.dirty.add(name))
                layer._medvision_watched = True

    def save(self, layers, folder: Path):
        """Write the edited layers (with source geometry) to ``folder/<name>.nii.gz``; returns the
        worker, or None when nothing changed since the last save."""
        snapshots = []
        for layer in layers:
            if isinstance(layer, Labels) and layer.name in self.dirty and GEOMETRY_KEY in layer.metadata:
                self.dirty.discard(layer.name)
                try:
                    snapshots.append((layer.name, snapshot(layer_volume(layer))))
                except MedvisionError as exc:
                    report_error(exc)
        if not snapshots:
            return None
        return self.writes.run(write_autosaves, folder, snapshots, on_result=self._saved,
                               description="Auto-saving labels")

    def _saved(self, result) -> None:
        written, failed = result
        for name, exc in failed:
            self.dirty.add(name)  # tried again at the next auto-save
            report_error(exc)
        self.last_written = written


def snapshot(volume: Volume) -> Volume:
    """The volume with its own copy of the voxels."""
    return volume.with_array(volume.array.copy())


def write_autosaves(folder: Path, snapshots: list[tuple[str, Volume]]) -> tuple[list[Path], list]:
    """Worker side of auto-save: ``(written paths, [(layer name, error)])``."""
    folder.mkdir(exist_ok=True)
    written, failed = [], []
    for name, volume in snapshots:
        try:
            written.append(write_volume(volume, folder / f"{safe_name(name)}.nii.gz", labels=True))
        except MedvisionError as exc:
            failed.append((name, exc))
    return written, failed


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
