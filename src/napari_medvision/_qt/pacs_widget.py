"""The PACS dock: search a DICOMweb server, open a series into napari, send a labels layer back as DICOM-SEG.

Thin over core/dicom/: every network call runs in a worker; the password lives only in the
password field (memory) or in ``$MEDVISION_PACS_PASSWORD``; failures are one-line notifications.
"""

from __future__ import annotations

import tempfile
import functools
from pathlib import Path

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_info
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.dicom.dicomweb import PacsClient, PacsCredentials
from ..core.errors import MedvisionError
from .._napari.dicom_results import layer_source_folder, layer_to_seg, pacs_series_layers
from .workers import report_error, start_worker

COLUMNS = ("Patient", "Date", "Modality", "Description", "Images")
MODALITIES = ("any", "CT", "MR", "PT", "CR", "DX", "US", "SEG", "RTSTRUCT")


def _reported(handler):
    """A button handler whose user errors (bad URL, no DICOM source) become notifications."""
    @functools.wraps(handler)
    def run(self, *args):
        try:
            return handler(self, *args)
        except MedvisionError as exc:
            report_error(exc)
            self.status.setText("failed (see the notification)")
            return None
    return run


class PacsWidget(QWidget):
    """Server, search form, results table, Open; "Send to PACS" for a labels layer."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.records = []
        self._worker = None
        self._build()
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()

    def _build(self) -> None:
        self.url_edit = QLineEdit("http://localhost:8042/dicom-web")
        self.user_edit = QLineEdit()
        self.password_edit = QLineEdit()
        self.password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.password_edit.setPlaceholderText("kept in memory only; or $MEDVISION_PACS_PASSWORD")
        self.patient_edit, self.name_edit, self.date_edit = QLineEdit(), QLineEdit(), QLineEdit()
        self.date_edit.setPlaceholderText("YYYYMMDD or YYYYMMDD-YYYYMMDD")
        self.modality_combo = QComboBox()
        self.modality_combo.addItems(MODALITIES)
        self.search_button = QPushButton("Search")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.open_button = QPushButton("Open")
        self.labels_combo = QComboBox()
        self.send_button = QPushButton("Send to PACS")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        server = QGroupBox("Server (DICOMweb)")
        form = QFormLayout(server)
        form.addRow("URL", self.url_edit)
        form.addRow("User", self.user_edit)
        form.addRow("Password", self.password_edit)
        search = QGroupBox("Search")
        form = QFormLayout(search)
        form.addRow("Patient ID", self.patient_edit)
        form.addRow("Patient name", self.name_edit)
        form.addRow("Study date", self.date_edit)
        form.addRow("Modality", self.modality_combo)
        form.addRow(self.search_button)
        send = QGroupBox("Send a result")
        row = QHBoxLayout(send)
        row.addWidget(self.labels_combo, 1)
        row.addWidget(self.send_button)
        layout = QVBoxLayout(self)
        for widget in (server, search, self.table, self.open_button, send, self.status):
            layout.addWidget(widget)
        self.search_button.clicked.connect(self.search)
        self.open_button.clicked.connect(self.open_selected)
        self.send_button.clicked.connect(self.send_selected)

    # --- helpers ---------------------------------------------------------------
    def client(self) -> PacsClient:
        """A client for the form's server; the password field wins over the environment."""
        credentials = PacsCredentials.from_environment(self.user_edit.text().strip() or None)
        if self.password_edit.text():
            credentials = PacsCredentials(credentials.user, self.password_edit.text(), credentials.token)
        return PacsClient(self.url_edit.text().strip(), credentials)

    def _busy(self, busy: bool, text: str = "") -> None:
        for button in (self.search_button, self.open_button, self.send_button):
            button.setEnabled(not busy)
        self.status.setText(text)

    def _run(self, function, *args, on_result, description: str, total: int | None = None):
        self._busy(True, f"{description}…")
        self._worker = start_worker(function, *args, on_result=on_result, description=description, total=total,
                                    on_error=lambda _exc: self._busy(False, "failed (see the notification)"),
                                    on_finished=self._finished)
        return self._worker

    def _finished(self) -> None:
        self._worker = None
        self._busy(False, self.status.text().rstrip("…"))

    def _refresh_layers(self, *_) -> None:
        current = self.labels_combo.currentText()
        self.labels_combo.clear()
        self.labels_combo.addItems([layer.name for layer in self.viewer.layers if isinstance(layer, Labels)])
        if current:
            self.labels_combo.setCurrentText(current)

    # --- search ----------------------------------------------------------------
    @_reported
    def search(self, *_):
        modality = self.modality_combo.currentText()
        filters = dict(patient_id=self.patient_edit.text().strip() or None,
                       patient_name=self.name_edit.text().strip() or None,
                       study_date=self.date_edit.text().strip() or None,
                       modality=None if modality == "any" else modality)
        client = self.client()
        return self._run(lambda: client.search(**filters), on_result=self._show_records, description="Searching")

    def _show_records(self, records) -> None:
        self.records = list(records)
        self.table.setRowCount(len(self.records))
        for row, r in enumerate(self.records):
            values = (f"{r.patient_name} ({r.patient_id})", r.study_date, r.modality, r.description,
                      "" if r.instances is None else str(r.instances))
            for column, value in enumerate(values):
                self.table.setItem(row, column, QTableWidgetItem(value))
        self.table.resizeColumnsToContents()
        if self.records:
            self.table.selectRow(0)
        self.status.setText(f"{len(self.records)} series")

    # --- open ------------------------------------------------------------------
    @_reported
    def open_selected(self, *_):
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            self.status.setText("select a series in the table first")
            return None
        record = self.records[rows[0].row()]
        client = self.client()
        image_series = record.modality not in ("SEG", "RTSTRUCT")
        return self._run(pacs_series_layers, client, record, on_result=self._add_layers, description="Retrieving",
                         total=record.instances if image_series else None)

    def _add_layers(self, layers) -> None:
        for data, kwargs, kind in layers:
            getattr(self.viewer, f"add_{kind}")(data, **kwargs)
        self.status.setText(f"opened {len(layers)} layer(s)")

    # --- send ------------------------------------------------------------------
    @_reported
    def send_selected(self, *_):
        name = self.labels_combo.currentText()
        if not name:
            self.status.setText("no labels layer to send")
            return None
        layer = self.viewer.layers[name]
        images = [item for item in self.viewer.layers if isinstance(item, Image)]
        folder = layer_source_folder(layer, images)
        client = self.client()
        data = np.array(layer.data, copy=True)  # what the user sees now, whatever they paint next

        def write_and_send():
            with tempfile.TemporaryDirectory(prefix="medvision-seg-") as temp:
                path = layer_to_seg(layer, Path(temp) / "result.dcm", folder, data=data)
                import pydicom

                client.push([pydicom.dcmread(path)])
            return name

        return self._run(write_and_send, on_result=lambda sent: show_info(f"sent '{sent}' to the PACS as DICOM-SEG"),
                         description="Sending")
