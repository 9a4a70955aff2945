""""Label next" in the Fine-tune dock: a folder's studies ranked by the model's uncertainty, most
uncertain first (core/interactive/rank.py scores them in the Run-model dock's compute worker, so
the model's bundle code never runs in the viewer; cancellable between studies); a click on a row
opens that study."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ..core.backend import shared_backend
from ..core.errors import MedvisionError
from .workers import report_error, start_engine, start_worker

COLUMNS = ("#", "uncertainty", "study")
RANK_STUDIES = "napari_medvision.core.interactive.rank:rank_studies"


class LabelNextPanel(QGroupBox):
    """Rank a folder of studies by how unsure the current model is; open one with a click.

    Args:
        viewer: the napari viewer studies open in.
        current_model: gives the segmentation model to rank with (the Fine-tune dock's model in use),
            or None when there is none.
    """

    def __init__(self, viewer, current_model: Callable[[], object | None]):
        super().__init__("Label next")
        self.viewer = viewer
        self.current_model = current_model
        self.worker = None
        self.records: list[dict] = []
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("folder of studies to rank")
        self.choose_button, self.rank_button = QPushButton("Choose…"), QPushButton("Rank")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(150)  # four rows
        self.status = QLabel("most uncertain first; click a row to open the study")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        for widget in (self.folder_edit, self.choose_button, self.rank_button, self.cancel_button):
            row.addWidget(widget, 1 if widget is self.folder_edit else 0)
        layout = QVBoxLayout(self)
        for item in (row, self.progress, self.table, self.status):
            layout.addLayout(item) if isinstance(item, QHBoxLayout) else layout.addWidget(item)
        self.choose_button.clicked.connect(self._choose)
        self.rank_button.clicked.connect(lambda: self.rank())
        self.cancel_button.clicked.connect(self.cancel)
        self.table.cellClicked.connect(lambda row, _column: self.open_study(row))

    def _choose(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of studies")
        if folder:
            self.folder_edit.setText(folder)

    def rank(self, folder: str | Path | None = None):
        """Score every study in ``folder`` (default: the one typed) in a worker; returns it."""
        from ..core.interactive.rank import find_studies

        folder = folder or self.folder_edit.text().strip()
        model = self.current_model()
        try:
            if model is None or getattr(model, "task", None) != "segmentation":
                raise MedvisionError("choose a segmentation model in the Fine-tune dock to rank by its uncertainty")
            studies = find_studies(folder)
        except MedvisionError as exc:
            report_error(exc)
            return None
        self.progress.setRange(0, len(studies))
        self.progress.setValue(0)
        self._set_running(True)
        job = shared_backend("inference").run(RANK_STUDIES, model, studies)
        self.worker = start_engine(job, on_progress=self._on_progress,
                                   on_result=self.show_records, on_finished=lambda: self._set_running(False),
                                   on_aborted=lambda: self.status.setText("ranking cancelled"))
        self.status.setText(f"scoring {len(studies)} studies with {model.name}…")
        return self.worker

    def cancel(self) -> None:
        """Stop now: the study being scored is dropped (the worker's job ends within about a second)."""
        if self.worker is not None:
            self.worker.quit()
            shared_backend("inference").cancel()

    def show_records(self, records: list[dict]) -> None:
        """Fill the table: ranked studies (most uncertain first), then skipped ones with their reason."""
        self.records = list(records)
        self.progress.setValue(self.progress.maximum())
        self.table.setRowCount(len(self.records))
        for row, record in enumerate(self.records):
            skipped = record["score"] is None
            cells = ("–" if skipped else str(row + 1), "skipped" if skipped else f"{record['score']:.4f}",
                     Path(record["path"]).name)
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(record.get("skipped", record["path"]))
                self.table.setItem(row, column, item)
        self.table.resizeColumnsToContents()
        ranked = sum(r["score"] is not None for r in self.records)
        self.status.setText(f"{ranked} studies ranked, most uncertain first; click a row to open it")

    def open_study(self, row: int):
        """Read the study of ``row`` in a worker and add it as an image layer; returns the worker."""
        from napari.layers import Layer

        from .._napari.layers import image_layer_data
        from ..core.io import read_volume

        if not 0 <= row < len(self.records):
            return None
        path = Path(self.records[row]["path"])
        name = path.name.split(".")[0] if path.is_file() else path.name
        return start_worker(read_volume, path, description=f"Opening {path.name}",
                            on_result=lambda volume: self.viewer.add_layer(
                                Layer.create(*image_layer_data(volume, name))))

    def _on_progress(self, step) -> None:
        self.progress.setValue(step.done)
        self.status.setText(f"{step.message} ({step.done + 1}/{step.total})")

    def _set_running(self, running: bool) -> None:
        self.rank_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if not running:
            self.worker = None
