"""The Fine-tune dock: collect corrected cases, fine-tune in the background with a live plot,
keep numbered versions, use / roll back / compare / delete them (the rules live in
core/training/versions.py). Auto-saves labels being edited. Every write runs in a worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, FloatSpinBox, SpinBox
from napari.layers import Image, Labels
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.backend import shared_backend
from ..core.errors import MedvisionError
from ..core.metrics import dice
from ..core.models import Bundle, list_bundles
from ..core.training import CaseStore
from ..core.training.finetune import FinetuneSettings
from ..core.training.versions import VersionStore
from .._napari.layers import image_layer_data, labels_layer_data, layer_volume
from .._napari.results import MODEL_OUTPUT_KEY
from .coalesce import set_progress
from .compute_target import ComputeTarget
from .label_next import LabelNextPanel
from .loss_plot import LossPlot
from .restart_offer import RestartOffer
from .saving import BackgroundWrites, LabelAutosave, snapshot
from .workers import report_error, start_engine, warm_up_in_background

AUTOSAVE_SECONDS = 60


class TrainingWidget(QWidget):
    """Cases, fine-tuning and versions for one case-store folder."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.store: CaseStore | None = None
        self.worker = None
        self.backend = shared_backend("training")  # where fine-tuning runs (core/backend)
        self.writes = BackgroundWrites()           # cases and auto-saves being written
        self.autosaver = LabelAutosave(self.writes)
        self.base_bundles: list[Bundle] = []
        self._build()
        self.target = ComputeTarget(self, show_models=self.set_base_bundles, show_local=self._local_models,
                                    keep=lambda model: model.task == "segmentation" and model.trainable)
        self.layout().insertWidget(0, self.target)   # "Compute on": this computer or a MONAI Label server
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        self._on_layers_changed()
        self._local_models()
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setInterval(AUTOSAVE_SECONDS * 1000)
        self.autosave_timer.timeout.connect(self.autosave)
        self.autosave_timer.start()
        warm_up_in_background()

    # --- layout --------------------------------------------------------------
    def _build(self) -> None:
        self.store_edit = QLineEdit()
        self.store_edit.setPlaceholderText("case-store folder")
        self.store_button = QPushButton("Choose…")
        self.image_combo, self.labels_combo = QComboBox(), QComboBox()
        self.case_name = QLineEdit()
        self.case_name.setPlaceholderText("case name (default: image name)")
        self.add_button = QPushButton("Add case")
        self.case_list = QListWidget()
        self.open_button, self.remove_button = QPushButton("Open"), QPushButton("Remove")
        self.model_combo = QComboBox()
        # magicgui value widgets named as FinetuneSettings' fields: their values are the settings.
        self.options = {option.name: option for option in (
            SpinBox(name="epochs", label="Epochs (at most)", min=1, max=1000, value=20),
            FloatSpinBox(name="max_minutes", label="Minutes (at most)", min=0.1, max=600, value=5),
            FloatSpinBox(name="correction_weight", label="Edited-voxel weight", min=0, max=100, value=4),
            CheckBox(name="keep_best_on_cancel", text="on Cancel, keep the best epoch",
                     tooltip="cancelling still writes the best epoch so far as a version"),
        )}
        self.start_button, self.cancel_button = QPushButton("Start"), QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.restart_offer = RestartOffer(self)
        self.plot = LossPlot()
        self._step = None   # the latest training step, shown with the plot's next redraw
        self.plot.before_draw = self._paint_progress   # bar and plot repaint together
        self.version_list = QListWidget()
        self.use_button, self.rollback_button = QPushButton("Use"), QPushButton("Roll back")
        self.compare_button, self.delete_button = QPushButton("Compare two"), QPushButton("Delete")
        self.rollback_button.setToolTip("put the parent of the version in use in use")

        cases = QGroupBox("Cases")
        form = QFormLayout(cases)
        row = QHBoxLayout()
        row.addWidget(self.store_edit, 1)
        row.addWidget(self.store_button)
        form.addRow("Store", row)
        form.addRow("Image", self.image_combo)
        form.addRow("Labels", self.labels_combo)
        row = QHBoxLayout()
        row.addWidget(self.case_name, 1)
        row.addWidget(self.add_button)
        form.addRow(row)
        form.addRow(self.case_list)
        row = QHBoxLayout()
        row.addWidget(self.open_button)
        row.addWidget(self.remove_button)
        form.addRow(row)

        training = QGroupBox("Fine-tuning")
        tform = QFormLayout(training)
        tform.addRow("Model", self.model_combo)
        for option in self.options.values():   # in the dock's own form, so all fields line up
            if isinstance(option, CheckBox):
                tform.addRow(option.native)
            else:
                tform.addRow(option.label, option.native)
        row = QHBoxLayout()
        row.addWidget(self.start_button)
        row.addWidget(self.cancel_button)
        tform.addRow(row)
        tform.addRow(self.progress)
        tform.addRow(self.status)
        tform.addRow(self.restart_offer)
        tform.addRow(self.plot)

        versions = QGroupBox("Versions")
        vbox = QVBoxLayout(versions)
        vbox.addWidget(self.version_list)
        row = QHBoxLayout()
        for button in (self.use_button, self.rollback_button, self.compare_button, self.delete_button):
            row.addWidget(button)
        vbox.addLayout(row)

        self.label_next = LabelNextPanel(self.viewer, self.current_bundle)
        layout = QVBoxLayout(self)
        for box in (cases, training, versions, self.label_next):
            layout.addWidget(box)
        self.store_button.clicked.connect(self._choose_store)
        self.store_edit.editingFinished.connect(lambda: self.open_store(self.store_edit.text()))
        self.add_button.clicked.connect(lambda: self.add_case())
        self.open_button.clicked.connect(self.open_selected_case)
        self.remove_button.clicked.connect(self.remove_selected_case)
        self.start_button.clicked.connect(lambda: self.start())
        self.cancel_button.clicked.connect(self.cancel)
        self.use_button.clicked.connect(self.use_selected_version)
        self.rollback_button.clicked.connect(self.rollback)
        self.delete_button.clicked.connect(self.delete_selected_version)
        self.compare_button.clicked.connect(lambda: self.compare())
        self.model_combo.currentIndexChanged.connect(lambda _: self.refresh_versions())

    # --- store and cases ---------------------------------------------------------
    def _choose_store(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Case store folder")
        if folder:
            self.open_store(folder)

    def open_store(self, folder: str | Path) -> CaseStore | None:
        """Open (or create, with the selected model's labels) a case store."""
        if not str(folder):
            return None
        folder = Path(folder)
        try:
            if (folder / "dataset.json").is_file():
                store = CaseStore(folder).check()
            else:
                bundle = self.base_bundle()
                if bundle is None:
                    raise MedvisionError("choose a segmentation model first: a new store takes its labels")
                labels = ({"background": 0, "structure": 1} if bundle.task == "interactive" else   # any structure
                          {"background": 0, **{name: value for value, name in bundle.labels.items()}})
                store = CaseStore.create(folder, labels, name=folder.name)
        except (MedvisionError, OSError) as exc:
            report_error(exc if isinstance(exc, MedvisionError) else MedvisionError(str(exc)))
            return None
        self.store = store
        self.store_edit.setText(str(folder))
        self.refresh_cases()
        self.refresh_versions()
        return store

    def refresh_cases(self) -> None:
        self.case_list.clear()
        if self.store is not None:
            self.case_list.addItems(self.store.case_ids())

    def add_case(self, name: str | None = None):
        """Write the chosen image and (corrected) labels as a case, in a worker; edits vs the
        model are recorded. Returns the worker (None when nothing was chosen)."""
        image_layer, labels_layer = self._layer(self.image_combo, Image), self._layer(self.labels_combo, Labels)
        if self.store is None or image_layer is None or labels_layer is None:
            report_error(MedvisionError("open a case store and choose an image and a labels layer first"))
            return None
        case_id = (name or self.case_name.text() or image_layer.name).strip().replace(" ", "_")
        try:
            image = layer_volume(image_layer)
            label = snapshot(layer_volume(labels_layer))   # painting may go on while it is written
        except MedvisionError as exc:
            report_error(exc)
            return None
        original = labels_layer.metadata.get(MODEL_OUTPUT_KEY)
        model_output = label.with_array(original) if original is not None and original.shape == label.shape else None
        store, edits = self.store, " with its edits" if model_output is not None else ""

        def added(_):
            self.refresh_cases()
            self.status.setText(f"added case {case_id}{edits}")

        self.status.setText(f"saving case {case_id}…")
        return self.writes.run(store.add_case, case_id, image, label, model_output=model_output, on_result=added,
                               on_error=lambda _exc: self.status.setText(f"case {case_id} was not saved"),
                               description=f"Saving case {case_id}")

    def open_selected_case(self) -> None:
        item = self.case_list.currentItem()
        if self.store is None or item is None:
            return
        from napari.layers import Layer

        try:
            image, label = self.store.read_case(item.text())
            names = {v: k for k, v in self.store.dataset()["labels"].items() if v}
        except MedvisionError as exc:  # e.g. a label file on another grid, changed outside the dock
            report_error(exc)
            return
        self.viewer.add_layer(Layer.create(*image_layer_data(image, item.text())))
        self.viewer.add_layer(Layer.create(*labels_layer_data(label, f"{item.text()} labels", names, opacity=0.5)))

    def remove_selected_case(self) -> None:
        item = self.case_list.currentItem()
        if self.store is not None and item is not None:
            self.store.remove_case(item.text())
            self.refresh_cases()

    # --- models and versions ---------------------------------------------------
    def set_base_bundles(self, bundles: list[Bundle]) -> None:
        self.base_bundles = list(bundles)
        self.model_combo.clear()
        self.model_combo.addItems([b.name for b in self.base_bundles])

    def _local_models(self) -> None:
        # the click-conditioned model too: it fine-tunes with simulated clicks on the corrected masks
        self.set_base_bundles([b for b in list_bundles() if b.task in ("segmentation", "interactive")])

    def base_bundle(self) -> Bundle | None:
        index = self.model_combo.currentIndex()
        return self.base_bundles[index] if 0 <= index < len(self.base_bundles) else None

    def versions(self) -> VersionStore | None:
        bundle = self.base_bundle()
        if self.store is None or bundle is None or self.target.is_server:   # a server keeps its own weights
            return None
        return VersionStore.for_model(self.store.root, bundle)

    def refresh_versions(self) -> None:
        self.version_list.clear()
        versions = self.versions()
        if versions is None:
            return
        current = versions.current()
        for version in versions.versions():
            dice_text = version.record.get("best_validation_dice")
            mark = "  ← in use" if current is not None and version.name == current.name else ""
            self.version_list.addItem(f"{version.name}  val Dice {dice_text}  "
                                      f"({version.record.get('date', '')[:16]}){mark}")

    def _selected_version(self):
        versions, row = self.versions(), self.version_list.currentRow()
        listed = versions.versions() if versions is not None else []
        return (versions, listed[row]) if 0 <= row < len(listed) else (versions, None)

    def use_selected_version(self) -> Bundle | None:
        """Put the selected version in use (an older one too); deletes nothing."""
        versions, chosen = self._selected_version()
        if chosen is None:
            return None
        return self._now_in_use(versions, versions.use(chosen))

    def rollback(self) -> Bundle | None:
        """Put the parent of the version in use in use (the base model after the first version)."""
        versions = self.versions()
        if versions is None:
            return None
        try:
            return self._now_in_use(versions, versions.rollback())
        except MedvisionError as exc:
            report_error(exc)
            return None

    def delete_selected_version(self) -> bool:
        """Delete the selected version; the version in use is refused."""
        versions, chosen = self._selected_version()
        if chosen is None:
            return False
        try:
            versions.delete(chosen)
        except MedvisionError as exc:
            report_error(exc)
            return False
        self.refresh_versions()
        self.status.setText(f"deleted {chosen.name}")
        return True

    def _now_in_use(self, versions: VersionStore, version) -> Bundle | None:
        bundle = versions.current_bundle(self.base_bundle())
        if bundle is not None and bundle.task == "interactive":   # clicks: the Annotate dock runs it
            for dock in self._docks_with("add_engine"):
                dock.add_engine(bundle.path)
        elif (runner := self._runner()) is not None and bundle is not None:
            runner.add_bundle(bundle.path)
        self.refresh_versions()
        self.status.setText(f"{version.name if version else 'the base model'} is in use")
        return bundle

    def current_bundle(self) -> Bundle | None:
        """The version in use, else the base model."""
        versions = self.versions()
        return versions.current_bundle(self.base_bundle()) if versions is not None else self.base_bundle()

    # --- fine-tuning -------------------------------------------------------------
    def start(self):
        """Fine-tune the model in use on the store's cases; returns the worker."""
        if self.target.is_server:
            return self.target.start_finetune()
        bundle, versions = self.current_bundle(), self.versions()
        if bundle is None or versions is None:
            report_error(MedvisionError("open a case store and choose a segmentation or interactive model first"))
            return None
        if self.writes.busy:
            report_error(MedvisionError("a case is still being saved; start again when it is done"))
            return None
        settings = FinetuneSettings(**{name: option.value for name, option in self.options.items()})
        self.plot.clear()
        job = self.backend.finetune(bundle, self.store, versions, settings)
        self.set_running(True)
        self.worker = start_engine(job, on_progress=self.show_progress, on_result=self._on_finished,
                                   on_error=self.show_error, on_finished=lambda: self.set_running(False),
                                   on_aborted=self._on_aborted)
        self.status.setText(f"fine-tuning {bundle.name} on {len(self.store.case_ids())} cases…")
        return self.worker

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.quit()
            self.backend.cancel()

    # set_running, show_progress and show_error are also what the compute-target panel
    # (compute_target.py) calls for a fine-tune that runs on a MONAI Label server.
    def set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if not running:
            self.plot.flush()
            self.worker = None

    def show_progress(self, step) -> None:
        if isinstance(step, str):
            self.status.setText(step)
            return
        self._step = step
        if step.val_dice is not None:
            self.plot.add_dice(step.epoch, step.val_dice)
            self.status.setText(f"epoch {step.epoch}: validation Dice {step.val_dice:.3f}")
        else:
            self.plot.add_loss(step.epoch - 1 + step.step / step.steps, step.loss)

    def _paint_progress(self) -> None:
        step = self._step
        if step is not None:
            set_progress(self.progress, (step.epoch - 1) * step.steps + step.step, step.max_epochs * step.steps)

    def _on_finished(self, result) -> None:
        self.refresh_versions()
        bundle = self.base_bundle()
        if result.version is not None and bundle is not None and bundle.task == "interactive":
            for dock in self._docks_with("add_engine"):   # the Annotate dock offers the new version
                dock.add_engine(result.version.path)
        verdict = "better than" if result.best_dice > result.base_dice else "no better than"
        self.status.setText(f"wrote {result.version.name}: validation Dice {result.base_dice:.3f} → "
                            f"{result.best_dice:.3f} ({verdict} its parent) in {result.seconds:.0f} s")

    def show_error(self, exc: BaseException) -> None:
        self.status.setText("failed: cases and versions are unchanged")
        report_error(exc)
        self.restart_offer.offer_if_died(exc)

    def _on_aborted(self) -> None:
        # The engine finishes its cancel (maybe writing a kept version) in the background.
        QTimer.singleShot(1500, self.refresh_versions)
        self.status.setText("cancelled: existing versions are untouched")

    # --- compare -----------------------------------------------------------------
    def compare(self, first: str | None = None, second: str | None = None):
        """Run two versions (default: the last two) on the chosen image; Dice between them and the labels."""
        versions, layer = self.versions(), self._layer(self.image_combo, Image)
        try:
            if versions is None or layer is None:
                raise MedvisionError("need an image and at least one version to compare")
            if self.base_bundle().task == "interactive":
                raise MedvisionError("an interactive model needs clicks: compare its versions by choosing each "
                                     "as the engine of the Annotate dock (each version's validation Dice is listed)")
            bundles = versions.comparison_pair(first, second, base=self.base_bundle())
            volume = layer_volume(layer)
        except MedvisionError as exc:
            report_error(exc)
            return None
        reference = self._layer(self.labels_combo, Labels)
        truth = np.asarray(reference.data) if reference is not None else None

        def job():
            results = []
            for bundle in bundles:
                results.append((yield from self.backend.run_model(bundle, volume)))
            return results

        def show(results):
            from napari.layers import Layer

            for bundle, result in zip(bundles, results):
                self.viewer.add_layer(Layer.create(*labels_layer_data(
                    result.labels, f"compare {bundle.path.name}", result.label_names, opacity=0.5)))
            a, b = (r.labels.array for r in results)
            text = f"Dice {bundles[0].path.name} vs {bundles[1].path.name}: {dice(a > 0, b > 0):.3f}"
            if truth is not None and truth.shape == a.shape:
                text += "; vs your labels: " + ", ".join(
                    f"{bnd.path.name} {dice(r.labels.array > 0, truth > 0):.3f}" for bnd, r in zip(bundles, results))
            self.status.setText(text)

        self.set_running(True)
        self.worker = start_engine(job(), on_progress=lambda _: None, on_result=show, on_error=self.show_error,
                                   on_finished=lambda: self.set_running(False))
        return self.worker

    # --- auto-save -----------------------------------------------------------------
    def autosave(self):
        """Write every labels layer edited since the last save to ``<store>/autosave/`` in a worker
        (each file atomic). Returns the worker; None when there is nothing new to save."""
        if self.store is None:
            return None
        return self.autosaver.save(list(self.viewer.layers), self.store.root / "autosave")

    def _on_layers_changed(self, event=None) -> None:
        for combo, kind in ((self.image_combo, Image), (self.labels_combo, Labels)):
            current = combo.currentText()
            combo.clear()
            names = [layer.name for layer in self.viewer.layers if isinstance(layer, kind)]
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
        self.autosaver.watch(self.viewer.layers)

    def _layer(self, combo: QComboBox, kind):
        name = combo.currentText()
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        return layer if isinstance(layer, kind) else None

    def _runner(self):
        for widget in self.viewer.window.dock_widgets.values():
            if hasattr(widget, "add_bundle") and hasattr(widget, "bundles"):
                return widget
        return None

    def _docks_with(self, method: str) -> list:
        return [w for w in self.viewer.window.dock_widgets.values() if callable(getattr(w, method, None))]
