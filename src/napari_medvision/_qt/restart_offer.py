"""The dock's answer to a compute worker that died: a button that starts a fresh one."""

from __future__ import annotations

from qtpy.QtWidgets import QPushButton

from ..core.backend import WorkerDiedError
from .workers import start_worker


class RestartOffer(QPushButton):
    """Hidden until a job fails with :class:`WorkerDiedError`; a click restarts the dock's backend
    (in a worker thread: ending the old process and starting the new one take a moment)."""

    def __init__(self, dock):
        super().__init__("Restart the compute worker")
        self.dock = dock
        self.setToolTip("The process that computes for this dock stopped; your layers and cases are as they were.")
        self.setVisible(False)
        self.clicked.connect(self.restart)

    def offer_if_died(self, exc: BaseException) -> bool:
        """Show the button when ``exc`` says the worker died; whether it did."""
        died = isinstance(exc, WorkerDiedError)
        if died:
            self.setVisible(True)
        return died

    def restart(self):
        """Start a fresh worker for the dock's backend; returns the napari worker doing it."""
        self.setVisible(False)
        self.dock.status.setText("restarting the compute worker…")
        return start_worker(self.dock.backend.restart, description="Restarting the compute worker",
                            on_result=lambda _: self.dock.status.setText("compute worker restarted"))
