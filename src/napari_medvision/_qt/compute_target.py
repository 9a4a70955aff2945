"""The docks' "Compute on" choice: this computer, or a MONAI Label server (URL and token).

Both are one interface (``core.backend.base.ComputeBackend``): choosing the server swaps the dock's
``backend`` for a :class:`~napari_medvision.core.remote.backend.MonaiLabelBackend` and its model list
for the server's (``GET /info/``), so the dock's Run, progress and Cancel work unchanged. Choosing
"This computer" puts the dock's own backend and models back.

The token comes from the (masked) field or ``MEDVISION_SERVER_TOKEN``; it stays in memory, in the
client, and never appears in a message, a log line or the dock's status. Every request runs in a
worker; a failure (unreachable, 401, unknown model, lost connection) is one notification and leaves
the layers, the case store and the local models as they were.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Callable

from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QWidget

from ..core.errors import MedvisionError
from ..core.remote.backend import MonaiLabelBackend
from ..core.remote.monailabel import TOKEN_VARIABLE
from .task_options import _set_row_visible
from .workers import report_error, start_engine, start_worker

#: Dock widgets that only mean something on this computer (hidden while a server is chosen).
LOCAL_ONLY = ("device_combo", "add_model_button")

LOCAL, SERVER = "This computer", "MONAI Label server"


class ComputeTarget(QGroupBox):
    """Where a dock computes; put at the top of the dock.

    Args:
        dock: the Run-model or Fine-tune dock (its ``backend`` attribute is swapped).
        show_models: offers a list of models in the dock (the server's, or [] while not connected).
        show_local: puts the dock's local model list back.
        keep: which of the server's models the dock offers (e.g. trainable segmentations only).
    """

    def __init__(self, dock: QWidget, show_models: Callable[[list], None], show_local: Callable[[], None],
                 keep: Callable[[object], bool] = lambda model: True):
        super().__init__("Compute on")
        self.dock, self.show_models, self.show_local, self.keep = dock, show_models, show_local, keep
        self.local_backend = dock.backend
        self.server: MonaiLabelBackend | None = None
        self.worker = None
        self._build()

    def _build(self) -> None:
        self.where = QComboBox()
        self.where.addItems([LOCAL, SERVER])
        self.url_edit = QLineEdit()
        self.url_edit.setPlaceholderText("http://gpu-server:8000")
        self.token_edit = QLineEdit()
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText(f"from {TOKEN_VARIABLE}" if os.environ.get(TOKEN_VARIABLE)
                                           else "none (a server without auth)")
        self.connect_button = QPushButton("Connect")
        self.strategy_combo = QComboBox()
        self.strategy_combo.addItem("random")
        self.next_button = QPushButton("Next study to label")
        self.next_button.setToolTip("ask the server which study to label next (active learning) and open it")
        self.server_status = QLabel("")
        self.server_status.setWordWrap(True)

        form = QFormLayout(self)
        form.addRow("Compute on", self.where)
        form.addRow("Server URL", self.url_edit)
        form.addRow("Token", self.token_edit)
        row = QHBoxLayout()
        row.addWidget(self.connect_button)
        row.addWidget(self.strategy_combo)
        row.addWidget(self.next_button)
        form.addRow(row)
        form.addRow(self.server_status)
        self._server_rows = [self.url_edit, self.token_edit, self.connect_button, self.strategy_combo,
                             self.next_button, self.server_status]
        self._form = form

        self.where.currentIndexChanged.connect(lambda _: self._on_where())
        self.connect_button.clicked.connect(lambda: self.connect_server())
        self.url_edit.returnPressed.connect(lambda: self.connect_server())
        self.next_button.clicked.connect(lambda: self.next_study())
        self._show_server_rows(False)

    # --- where ---------------------------------------------------------------------------------
    @property
    def is_server(self) -> bool:
        return self.where.currentText() == SERVER

    def _show_server_rows(self, server: bool) -> None:
        for widget in self._server_rows:
            label = self._form.labelForField(widget)
            widget.setVisible(server)
            if label is not None:
                label.setVisible(server)
        self.next_button.setEnabled(self.server is not None)

    def _on_where(self) -> None:
        server = self.is_server
        self._show_server_rows(server)
        for name in LOCAL_ONLY:
            if getattr(self.dock, name, None) is not None:
                _set_row_visible(getattr(self.dock, name), not server)
        if server:
            self.show_models([])           # nothing runs here by mistake before the server answers
            self.server_status.setText("enter the server's URL and Connect")
            return
        if self.server is not None:
            self.server.close()
            self.server = None
        if isinstance(self.dock.backend, MonaiLabelBackend):
            self.dock.backend = self.local_backend
        self.show_local()

    def connect_server(self):
        """Read the server's models (``GET /info/``) in a worker; on success the dock computes there.

        Returns the napari worker (None when the URL is not one).
        """
        token = self.token_edit.text().strip() or None
        try:
            backend = MonaiLabelBackend(self.url_edit.text().strip(), token=token)
        except MedvisionError as exc:
            report_error(exc)
            return None
        self.connect_button.setEnabled(False)
        self.server_status.setText(f"connecting to {backend.client.url}…")
        self.worker = start_worker(backend.list_models, on_result=lambda models: self._connected(backend, models),
                                   on_error=lambda _exc: self._not_connected(backend), on_finished=self._done,
                                   description="Connecting to the server")
        return self.worker

    def _connected(self, backend: MonaiLabelBackend, models: list) -> None:
        if not self.is_server:             # the user went back to this computer meanwhile
            backend.close()
            return
        if self.server is not None and self.server is not backend:
            self.server.close()
        if not isinstance(self.dock.backend, MonaiLabelBackend):
            self.local_backend = self.dock.backend     # the dock's own, put back on "This computer"
        self.server = backend
        self.dock.backend = backend
        offered = [model for model in models if self.keep(model)]
        self.show_models(offered)
        strategies = sorted((backend.client.info().get("strategies") or {"random": {}}))
        self.strategy_combo.clear()
        self.strategy_combo.addItems(strategies)
        if "random" in strategies:
            self.strategy_combo.setCurrentText("random")
        self.next_button.setEnabled(True)
        self.server_status.setText(f"connected to {backend.client.url}: {len(offered)} model(s) offered here")

    def _not_connected(self, backend: MonaiLabelBackend) -> None:
        self.server_status.setText(f"not connected to {backend.client.url}; nothing here was changed")

    def _done(self) -> None:
        self.connect_button.setEnabled(True)
        self.worker = None

    # --- active learning -----------------------------------------------------------------------
    def next_study(self):
        """Ask the server for the next study to label (``POST /activelearning/{strategy}``) and open it
        as an image layer (its own geometry); returns the napari worker."""
        if self.server is None:
            report_error(MedvisionError("connect to a MONAI Label server first"))
            return None
        client, strategy = self.server.client, self.strategy_combo.currentText() or "random"
        self.next_button.setEnabled(False)
        self.server_status.setText(f"asking {client.url} for the next study ({strategy})…")
        self.worker = start_worker(_next_study, client, strategy, on_result=self._open_study,
                                   on_error=lambda _exc: self.server_status.setText("no study was opened"),
                                   on_finished=self._next_done, description="Next study to label")
        return self.worker

    def _open_study(self, found) -> None:
        if found is None:
            self.server_status.setText("the server has no unlabelled study left")
            return
        from napari.layers import Layer

        from .._napari.layers import image_layer_data

        image_id, volume = found
        self.dock.viewer.add_layer(Layer.create(*image_layer_data(volume, image_id)))
        self.server_status.setText(f"opened {image_id}, the server's next study to label")

    def _next_done(self) -> None:
        self.next_button.setEnabled(self.server is not None)
        self.worker = None

    # --- fine-tuning on the server -----------------------------------------------------------------
    def start_finetune(self):
        """The Fine-tune dock's Start on a server: upload the case store's images and corrected labels
        (``PUT /datastore/label``), start training (``POST /train/{model}``), show its status until it
        ends; returns the napari worker."""
        dock = self.dock
        model = dock.base_bundle()
        if self.server is None or model is None or dock.store is None:
            report_error(MedvisionError("connect to the server, choose one of its trainable models and open a "
                                        "case store first"))
            return None
        if dock.writes.busy:
            report_error(MedvisionError("a case is still being saved; start again when it is done"))
            return None
        settings = SimpleNamespace(epochs=dock.options["epochs"].value, max_minutes=dock.options["max_minutes"].value)
        job = self.server.finetune(model, dock.store, None, settings)
        dock.set_running(True)
        dock.progress.setRange(0, 0)       # busy: the server reports a status, not a fraction
        dock.worker = start_engine(job, on_progress=dock.show_progress, on_result=self._trained,
                                   on_error=dock.show_error, on_finished=self._training_done,
                                   on_aborted=lambda: dock.status.setText(
                                       "cancelled: the server's training was stopped; your cases are unchanged"))
        dock.status.setText(f"uploading {len(dock.store.case_ids())} cases to {self.server.client.url}…")
        return dock.worker

    def _trained(self, result: dict) -> None:
        metric = result.get("metric")
        shown = f"{metric:.3f}" if isinstance(metric, (int, float)) else "not reported"
        self.dock.status.setText(f"trained {result['model']} on {result['server']} with {result['cases']} cases "
                                 f"in {result['seconds']:.0f} s: {result['metric_name']} {shown}")

    def _training_done(self) -> None:
        self.dock.progress.setRange(0, 1)
        self.dock.progress.setValue(0)
        self.dock.set_running(False)


def _next_study(client, strategy: str):
    """(id, Volume) of the study the server would have labelled next; None when none is left."""
    record = client.next_sample(strategy)
    if not record or not record.get("id"):
        return None
    return record["id"], client.download_image(record["id"])
