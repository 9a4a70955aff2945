"""The Run-model dock: pick a study and a model, run it in a worker, get the results as layers."""

from __future__ import annotations

from pathlib import Path

from napari.layers import Image
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.backend import shared_backend
from ..core.errors import MedvisionError, UntrustedCodeError
from ..core.models import Bundle, list_models, load_model
from .coalesce import Coalesced, set_progress
from .compute_target import ComputeTarget
from .._napari.layers import layer_volume
from .._napari.results import boxes_layer, heatmap_layer, segmentation_layers
from .model_dims import model_for
from .restart_offer import RestartOffer
from .task_options import show_task_options
from .trust_view import CHECKING, TRUST_TEXT, TRUST_TIP, show_findings
from .trust_view import trust_state as _trust_state
from .trust_view import with_trust as _with_trust
from .workers import report_error, start_engine, start_worker, warm_up_in_background


class InferenceWidget(QWidget):
    """Run a model (MONAI bundle or nnU-Net folder: segmentation, classification or detection) on image layers.

    A model with several input channels (nnU-Net) gets one image-layer choice per channel.
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.backend = shared_backend("inference")  # where models run (core/backend)
        self.bundles: list = []  # models of any kind (core/models/interface.py)
        self.channel_combos: list[QComboBox] = []
        self._build()
        self.target = ComputeTarget(self, show_models=self.set_bundles, show_local=self.refresh_models)
        self.layout().insertWidget(0, self.target)   # "Compute on": this computer or a MONAI Label server
        self.viewer.layers.events.inserted.connect(self.refresh_layers)
        self.viewer.layers.events.removed.connect(self.refresh_layers)
        self.viewer.layers.selection.events.active.connect(self._follow_active_layer)
        self.refresh_layers()
        self.refresh_models()
        warm_up_in_background()

    # --- layout ------------------------------------------------------------
    def _build(self) -> None:
        self.image_combo = QComboBox()
        self.model_combo = QComboBox()
        self.add_model_button = QPushButton("Add model…")
        self.card = QLabel()
        self.card.setWordWrap(True)
        self.trust_label = QLabel()
        self.trust_label.setWordWrap(True)
        self.trust_check = QCheckBox(TRUST_TEXT)
        self.trust_check.setToolTip(TRUST_TIP)
        self.trust_check.setEnabled(False)
        self._trust_shown: tuple[Bundle, list[str], bool] | None = None
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda", "mps"])
        self.overlap_spin = QDoubleSpinBox()
        self.overlap_spin.setRange(0.0, 0.9)
        self.overlap_spin.setSingleStep(0.125)
        self.overlap_spin.setSpecialValueText("bundle's")
        self.overlap_spin.setValue(0.0)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(0, 64)
        self.batch_spin.setSpecialValueText("bundle's")
        self.tta_check = QCheckBox("flip test-time augmentation")
        self.probabilities_check = QCheckBox("keep probabilities")
        self.uncertainty_check = QCheckBox("uncertainty map")
        self.cleanup_spin = QDoubleSpinBox()
        self.cleanup_spin.setRange(0, 1e6)
        self.cleanup_spin.setSuffix(" mm³")
        self.score_spin = QDoubleSpinBox()
        self.score_spin.setRange(0.0, 1.0)
        self.score_spin.setSingleStep(0.05)
        self.score_spin.setSpecialValueText("bundle's")
        self.explain_check = QCheckBox("Grad-CAM heatmap")
        self.explain_check.setChecked(True)
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self._show_progress = Coalesced(self._paint_progress, parent=self)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.restart_offer = RestartOffer(self)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["", ""])
        self.table.verticalHeader().setVisible(False)

        model_box = QGroupBox("Model")
        form = QFormLayout(model_box)
        form.addRow("Image", self.image_combo)
        row = QHBoxLayout()
        row.addWidget(self.model_combo, 1)
        row.addWidget(self.add_model_button)
        form.addRow("Model", row)
        form.addRow(self.card)
        form.addRow(self.trust_label)
        form.addRow(self.trust_check)
        form.addRow("Device", self.device_combo)
        self.channel_box = QGroupBox("Input channels (one layer each)")
        self.channel_form = QFormLayout(self.channel_box)
        self.channel_box.setVisible(False)

        options = QGroupBox("Options")
        option_form = QFormLayout(options)
        option_form.addRow("Window overlap", self.overlap_spin)
        option_form.addRow("Windows per batch", self.batch_spin)
        option_form.addRow(self.tta_check)
        option_form.addRow(self.probabilities_check)
        option_form.addRow(self.uncertainty_check)
        option_form.addRow("Drop pieces under", self.cleanup_spin)
        option_form.addRow("Box score threshold", self.score_spin)
        option_form.addRow(self.explain_check)

        layout = QVBoxLayout(self)
        layout.addWidget(model_box)
        layout.addWidget(self.channel_box)
        layout.addWidget(options)
        row = QHBoxLayout()
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.restart_offer)
        layout.addWidget(self.table, 1)

        self.model_combo.currentIndexChanged.connect(self._show_card)
        self.image_combo.activated.connect(lambda _index: self._match_model(self._image_layer()))
        self.add_model_button.clicked.connect(self._add_model_dialog)
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button.clicked.connect(self.cancel)

    # --- choices -------------------------------------------------------------
    def refresh_layers(self, event=None) -> None:
        current = self.image_combo.currentText()
        self.image_combo.clear()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        for combo in self.channel_combos:
            chosen = combo.currentText()
            combo.clear()
            combo.addItems(names)
            if chosen in names:
                combo.setCurrentText(chosen)

    def _follow_active_layer(self, event=None) -> None:
        """An image made active that the chosen model does not suit (a 2D radiograph while a 3D model is
        chosen, e.g. a sample just opened): choose that image and a model of its dimensionality."""
        layer = self.viewer.layers.selection.active
        if not isinstance(layer, Image) or model_for(self.bundles, layer, self.model_combo.currentIndex()) \
                == self.model_combo.currentIndex():
            return
        if self.image_combo.findText(layer.name) < 0:
            self.refresh_layers()
        self.image_combo.setCurrentText(layer.name)
        self._match_model(layer)

    def _match_model(self, layer) -> None:
        if layer is not None:
            self.model_combo.setCurrentIndex(model_for(self.bundles, layer, self.model_combo.currentIndex()))

    def refresh_models(self) -> None:
        self.set_bundles(list_models())

    def set_bundles(self, bundles: list) -> None:
        """Offer these models (bundles, nnU-Net models...)."""
        self.bundles = list(bundles)
        self.model_combo.clear()
        self.model_combo.addItems([_entry(b) for b in self.bundles])
        self._show_card()

    def add_bundle(self, path: str | Path):
        """Add a model (bundle or nnU-Net folder / zip) to the choices and select it."""
        try:
            bundle = load_model(path)
            bundle.task  # noqa: B018 - fail now on a bad metadata task
        except MedvisionError as exc:
            report_error(exc)
            return None
        self.bundles.append(bundle)
        self.model_combo.addItem(_entry(bundle))
        self.model_combo.setCurrentIndex(self.model_combo.count() - 1)
        return bundle

    add_model = add_bundle

    def _add_model_dialog(self) -> None:
        from .add_model_dialog import AddModelDialog

        dialog = AddModelDialog(self)
        if dialog.exec_() and dialog.imported is not None:
            self.add_bundle(dialog.imported)

    def selected_bundle(self):
        index = self.model_combo.currentIndex()
        return self.bundles[index] if 0 <= index < len(self.bundles) else None

    def _show_card(self, _index=None) -> None:
        bundle = self.selected_bundle()
        self._show_channels(bundle)
        show_task_options(self, bundle)
        if bundle is None:
            self.card.setText("no model: add a MONAI bundle, an nnU-Net model or a TorchScript / ONNX file")
            return
        labels = ", ".join(bundle.labels.values()) or "—"
        intended = bundle.metadata.get("intended_use", "")
        self.card.setText(f"<b>{bundle.display_name}</b> — {bundle.task}<br>labels: {labels}<br>"
                          f"{bundle.description}<br><i>{intended}</i>")
        self._show_trust(bundle)

    # --- trust ------------------------------------------------------------------
    def _show_trust(self, bundle: Bundle) -> None:
        """Check the bundle in a worker (MONAI's first lookup imports for seconds), then show the findings."""
        self._trust_shown = None
        self.trust_check.setEnabled(False)
        self.trust_check.setChecked(bundle.trusted)
        self.trust_label.setText(CHECKING)
        start_worker(_trust_state, bundle, on_result=lambda state: self._on_trust_state(bundle, *state),
                     description="Checking model")

    def _on_trust_state(self, bundle: Bundle, findings: list[str], remembered: bool) -> None:
        if bundle is not self.selected_bundle():
            return  # the user has chosen another model meanwhile
        self._trust_shown = (bundle, findings, remembered)
        show_findings(self.trust_label, self.trust_check, findings, bundle.trusted or remembered)

    def _show_channels(self, model) -> None:
        """One layer choice per input channel for models that take one image per channel (nnU-Net)."""
        while self.channel_form.rowCount():
            self.channel_form.removeRow(0)
        self.channel_combos = []
        nnunet = getattr(model, "kind", "") == "nnunet"
        if nnunet:
            self.tta_check.setChecked(True)  # nnU-Net mirrors by default
        names = model.channel_names if nnunet else None
        self.channel_box.setVisible(bool(names) and len(names) > 1)
        if not names or len(names) < 2:
            return
        layers = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        for index, name in enumerate(names):
            combo = QComboBox()
            combo.addItems(layers)
            if index < len(layers):
                combo.setCurrentIndex(index)
            self.channel_form.addRow(name, combo)
            self.channel_combos.append(combo)

    # --- running --------------------------------------------------------------
    def run(self, trusted: bool = False):
        """Start the selected model on the selected image; returns the worker (or None)."""
        layer = self._image_layer()
        bundle = self.selected_bundle()
        if layer is None or bundle is None:
            report_error(MedvisionError("choose an image layer and a model first"))
            return None
        trusted = trusted or self.trust_check.isChecked()
        bundle.trusted = trusted
        try:
            volume = layer_volume(layer)
            if self.channel_combos:
                volume = [layer_volume(self.viewer.layers[c.currentText()]) for c in self.channel_combos]
            elif getattr(bundle, "kind", "") == "nnunet":
                volume = [volume]
        except (MedvisionError, KeyError) as exc:
            report_error(exc if isinstance(exc, MedvisionError) else MedvisionError("choose a layer for each channel"))
            return None
        options = dict(device=self.device_combo.currentText(),
                       overlap=self.overlap_spin.value() or None, sw_batch_size=self.batch_spin.value() or None,
                       tta=self.tta_check.isChecked(), keep_probabilities=self.probabilities_check.isChecked(),
                       uncertainty=self.uncertainty_check.isChecked(), min_component_mm3=self.cleanup_spin.value(),
                       score_threshold=self.score_spin.value() or None, explain=self.explain_check.isChecked(),
                       backend="auto")  # as the CLI: an exported CPU engine where measured faster (segmentation)
        try:
            job = self.backend.run_model(bundle, volume, **options)
            engine = _with_layers(_with_trust(job, bundle, self._forget(bundle)),
                                  bundle, volume[0] if isinstance(volume, list) else volume)
        except MedvisionError as exc:
            report_error(exc)
            return None
        self._set_running(True)
        self.worker = start_engine(engine, on_progress=self._on_progress,
                                   on_result=lambda outcome: self._on_result(*outcome, bundle),
                                   on_error=lambda exc: self._on_error(exc, bundle),
                                   on_finished=lambda: self._set_running(False))
        self.status.setText(f"running {bundle.name} on {layer.name}…")
        return self.worker

    def _forget(self, bundle: Bundle) -> bool:
        """Whether the user unticked Trust on a bundle whose trust was remembered."""
        shown = self._trust_shown
        return shown is not None and shown[0] is bundle and shown[2] and not bundle.trusted

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.quit()
            self.backend.cancel()
            self.status.setText("cancelled: no layer was changed")

    def _image_layer(self) -> Image | None:
        name = self.image_combo.currentText()
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        return layer if isinstance(layer, Image) else None

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if not running:
            self._show_progress.flush()
            self.worker = None

    def _on_progress(self, step) -> None:
        self._show_progress(step)   # a few repaints a second, not one per window (see .coalesce)

    def _paint_progress(self, step) -> None:
        set_progress(self.progress, step.done, max(step.total, 1), f"{step.message}: %p%")

    def _on_error(self, exc: Exception, bundle: Bundle) -> None:
        self.status.setText("failed: no layer was changed")
        if isinstance(exc, UntrustedCodeError) and "--trust" in str(exc):
            answer = QMessageBox.question(
                self, "Trust this model?",
                f"{exc}\n\nRun it only if you trust where this bundle came from. Run it now?")
            if answer == QMessageBox.Yes:
                self.trust_check.setChecked(True)
                self.run(trusted=True)
            return
        report_error(exc)
        self.restart_offer.offer_if_died(exc)

    def _on_result(self, result, layers: list, table: tuple, bundle: Bundle) -> None:
        from qtpy.QtCore import QTimer

        # One layer per turn of the event loop: each addition costs napari tens of ms of GUI time.
        for delay, layer in enumerate(layers):
            QTimer.singleShot(delay, lambda layer=layer: self.viewer.add_layer(layer))
        self._fill_table(*table)
        notes = "; ".join(result.notes)
        self.status.setText(f"{bundle.name}: done in {result.seconds:.1f} s" + (f" ({notes})" if notes else ""))

    def _fill_table(self, header: list[str], rows: list[tuple[str, str]]) -> None:
        self.table.setHorizontalHeaderLabels(header)
        self.table.setRowCount(len(rows))
        for r, (name, value) in enumerate(rows):
            self.table.setItem(r, 0, QTableWidgetItem(name))
            self.table.setItem(r, 1, QTableWidgetItem(value))


def _entry(model) -> str:
    kind = getattr(model, "kind", "bundle")
    return f"{model.name} ({model.task})" if kind == "bundle" else f"{model.name} ({kind} {model.task})"


def _with_layers(engine, bundle: Bundle, volume):
    """The engine, then its result turned into napari layers still in the worker thread,
    so the GUI thread only has to add them."""
    result = yield from engine
    return (result, *_result_layers(result, bundle, volume))


def _result_layers(result, bundle: Bundle, volume) -> tuple[list, tuple]:
    from napari.layers import Layer

    if bundle.task == "segmentation":
        data = segmentation_layers(result, bundle.name, bundle.colors)
        rows = [(name, f"{ml:.2f} mL") for name, ml in result.volumes_ml.items()]
        if result.case_uncertainty is not None:
            rows.append(("uncertainty (case)", f"{result.case_uncertainty:.3f}"))
        header = ["label", "volume"]
    elif bundle.task == "classification":
        layer = heatmap_layer(result, bundle.name)
        data = [layer] if layer is not None else []
        rows = [(name, f"{p:.3f}") for name, p in result.probabilities.items()]
        rows.append(("prediction", result.prediction))
        header = ["class", "probability"]
    else:
        data = [boxes_layer(result, volume, bundle.name)]
        rows = [(box.label, f"{box.score:.3f}") for box in result.boxes]
        header = ["box", "score"]
    return [Layer.create(*item) for item in data], (header, rows)
