"""The Study dock: open a study (file or DICOM series), window it like a radiologist,
read HU and world position under the cursor, see its geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import MedvisionError
from ..core.io import list_dicom_series, read_label_for, read_volume
from ..core.io.reader import READ_EXTENSIONS
from ..core.windowing import AUTO, CT_PRESETS, FILE_WINDOW, auto_limits, limits_to_window, window_to_limits
from .._napari.layers import GEOMETRY_KEY, labels_layer_data, layer_volume
from .._napari.reader import volume_layer_data
from .workers import report_error, start_worker


class StudyWidget(QWidget):
    """Open studies and window them; the selected image layer is the one acted on."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self._series = []
        self._worker = None
        self._watched = None
        self._is_ct = False
        self.mpr = None          # the linked coronal / sagittal views while "MPR" is ticked
        self._build()
        self.viewer.layers.selection.events.active.connect(self._on_active_layer)
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.viewer.cursor.events.position.connect(self._on_cursor)
        for layer in self.viewer.layers:
            _widen_slider_range(layer)
        self._on_active_layer()

    # --- layout ------------------------------------------------------------
    def _build(self) -> None:
        self.open_file_button = QPushButton("Open as study…")
        self.open_file_button.setToolTip("a NIfTI / NRRD / MetaImage / DICOM file, "
                                         "or an X-ray saved as PNG / JPEG / TIFF")
        self.open_folder_button = QPushButton("Open DICOM folder…")
        self.open_label_button = QPushButton("Open label map…")
        self.new_label_button = QPushButton("New label layer")
        self.series_combo = QComboBox()
        self.load_series_button = QPushButton("Load series")
        self.cancel_button = QPushButton("Cancel")
        self.status = QLabel("")
        self.preset_combo = QComboBox()
        self.preset_combo.addItems(["(custom)", *CT_PRESETS, AUTO, FILE_WINDOW])
        self.width_spin, self.level_spin = self._spin(1, 10000), self._spin(-5000, 10000)
        self.cursor_label = QLabel("move the cursor over the image")
        self.geometry_label = QLabel("no study")
        for label in (self.cursor_label, self.geometry_label, self.status):
            label.setWordWrap(True)

        open_box = QGroupBox("Study")
        open_layout = QVBoxLayout(open_box)
        row = QHBoxLayout()
        row.addWidget(self.open_file_button)
        row.addWidget(self.open_folder_button)
        open_layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.series_combo, 1)
        row.addWidget(self.load_series_button)
        open_layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.open_label_button)
        row.addWidget(self.new_label_button)
        row.addWidget(self.cancel_button)
        open_layout.addLayout(row)
        open_layout.addWidget(self.status)

        window_box = QGroupBox("Window")
        form = QFormLayout(window_box)
        form.addRow("Preset", self.preset_combo)
        form.addRow("Width", self.width_spin)
        form.addRow("Level", self.level_spin)
        self.mpr_check = QCheckBox("MPR: axial, coronal and sagittal views")
        self.mpr_check.setToolTip("linked views: a click (pan/zoom tool) or a scroll in one moves the others")
        form.addRow(self.mpr_check)

        info_box = QGroupBox("Cursor and geometry")
        info_layout = QVBoxLayout(info_box)
        info_layout.addWidget(self.cursor_label)
        info_layout.addWidget(self.geometry_label)

        layout = QVBoxLayout(self)
        for box in (open_box, window_box, info_box):
            layout.addWidget(box)
        layout.addStretch(1)

        self.series_combo.setEnabled(False)
        self.load_series_button.setEnabled(False)
        self.cancel_button.setEnabled(False)
        self.open_file_button.clicked.connect(self._choose_file)
        self.open_folder_button.clicked.connect(self._choose_folder)
        self.open_label_button.clicked.connect(self._choose_label)
        self.new_label_button.clicked.connect(self.new_label_layer)
        self.load_series_button.clicked.connect(self.load_selected_series)
        self.cancel_button.clicked.connect(self.cancel)
        self.preset_combo.currentTextChanged.connect(self.apply_preset)
        self.width_spin.editingFinished.connect(self._on_spins)
        self.level_spin.editingFinished.connect(self._on_spins)
        self.mpr_check.toggled.connect(self.show_mpr)

    @staticmethod
    def _spin(low: float, high: float) -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setRange(low, high)
        spin.setDecimals(1)
        spin.setKeyboardTracking(False)
        return spin

    # --- opening (in workers: the GUI never waits on disk) ----------------
    def _choose_file(self) -> None:
        # Pictures too: napari's own reader list leaves PNG / JPEG / TIFF to other plugins.
        studies = " ".join(f"*{ext}" for ext in READ_EXTENSIONS)
        path, _ = QFileDialog.getOpenFileName(self, "Open as study", "", f"Studies ({studies});;All files (*)")
        if path:
            self.open_path(path)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open DICOM folder")
        if folder:
            self.scan_folder(folder)

    def _choose_label(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open label map for the selected study")
        if path:
            self.open_label(path)

    def open_path(self, path: str | Path, series_uid: str | None = None):
        """Read a file or series in a worker and add it as a layer; returns the worker."""
        name = Path(path).name
        if series_uid:
            name = next((s.description for s in self._series if s.uid == series_uid), name) or name
        return self._run(_read_as_layer, path, series_uid, name, on_result=self._add_layer,
                         description=f"Reading {Path(path).name}")

    def scan_folder(self, folder: str | Path):
        """List a DICOM folder's series into the chooser (largest first); returns the worker."""
        self._folder = Path(folder)
        return self._run(list_dicom_series, folder, on_result=self._show_series,
                         description=f"Scanning {Path(folder).name}")

    def load_selected_series(self):
        index = self.series_combo.currentIndex()
        if index < 0 or not self._series:
            return None
        return self.open_path(self._folder, series_uid=self._series[index].uid)

    def open_label(self, path: str | Path):
        """Read a label map and overlay it on the selected study, refusing any geometry mismatch."""
        layer = self.image_layer()
        if layer is None:
            report_error(_NoStudy("select the study (an image layer) the label map belongs to"))
            return None
        image = layer_volume(layer)
        return self._run(read_label_for, image, path, description=f"Reading {Path(path).name}",
                         on_result=lambda label: self.viewer.add_layer(
                             _to_layer(labels_layer_data(label, Path(path).name.split(".")[0], opacity=0.5))))

    def new_label_layer(self):
        """An empty Labels layer on the selected study's exact grid, ready for the brush."""
        layer = self.image_layer()
        if layer is None:
            report_error(_NoStudy("select a study (image layer) first"))
            return None
        image = layer_volume(layer)
        volume = image.with_array(np.zeros(image.shape, np.uint8))
        return self.viewer.add_layer(_to_layer(labels_layer_data(volume, f"{layer.name} labels")))

    def cancel(self) -> None:
        """Drop the running read; its result, if it still arrives, is discarded."""
        if self._worker is not None:
            self._worker.quit()
            self._worker = None
        self._set_busy(False, "cancelled")

    def _run(self, function, *args, on_result, description, **kwargs):
        self._set_busy(True, description + "…")
        job = {}

        def deliver(result):
            if self._worker is job["worker"]:  # a cancelled read's result is dropped
                on_result(result)

        def finished():
            if self._worker is job["worker"]:
                self._worker = None
                self._set_busy(False, "")

        # Results and "finished" are queued to the GUI thread, so they run after job is filled.
        worker = start_worker(function, *args, on_result=deliver, on_finished=finished,
                              on_error=lambda _exc: self.status.setText("failed"),
                              description=description, **kwargs)
        job["worker"] = self._worker = worker
        return worker

    def _set_busy(self, busy: bool, message: str) -> None:
        self.cancel_button.setEnabled(busy)
        self.status.setText(message)

    def _show_series(self, series) -> None:
        self._series = list(series)
        self.series_combo.clear()
        self.series_combo.addItems([s.label() for s in self._series])
        self.series_combo.setEnabled(True)
        self.load_series_button.setEnabled(True)
        self.status.setText(f"{len(self._series)} series found")

    def _add_layer(self, read: tuple) -> None:
        from napari.utils.notifications import show_warning

        warnings, layer_data = read
        for warning in warnings:
            show_warning(f"{layer_data[1]['name']}: {warning}")
        layer = self.viewer.add_layer(_to_layer(layer_data))
        self.viewer.layers.selection.active = layer

    # --- windowing -----------------------------------------------------------
    def image_layer(self) -> Image | None:
        """The active layer if it is an image, else the topmost image layer."""
        active = self.viewer.layers.selection.active
        if isinstance(active, Image):
            return active
        images = [layer for layer in self.viewer.layers if isinstance(layer, Image)]
        return images[-1] if images else None

    def apply_preset(self, name: str) -> None:
        """Set the selected image's contrast limits from a preset name (CT presets, or Auto)."""
        layer = self.image_layer()
        if layer is None or name not in (*CT_PRESETS, AUTO, FILE_WINDOW):
            return
        if name == FILE_WINDOW:
            if layer.metadata.get("window"):
                self.set_window(*layer.metadata["window"])
        elif name == AUTO:
            self.set_limits(*auto_limits(layer.data))
        else:
            self.set_limits(*window_to_limits(*CT_PRESETS[name]))

    def set_window(self, width: float, level: float) -> None:
        self.set_limits(*window_to_limits(width, level))

    def set_limits(self, low: float, high: float) -> None:
        layer = self.image_layer()
        if layer is None:
            return
        range_low, range_high = layer.contrast_limits_range
        layer.contrast_limits_range = (min(range_low, low), max(range_high, high))
        layer.contrast_limits = (low, high)

    def _on_spins(self) -> None:
        self.preset_combo.setCurrentIndex(0)
        self.set_window(self.width_spin.value(), self.level_spin.value())

    def _on_inserted(self, event) -> None:
        _widen_slider_range(event.value)
        self._on_active_layer()

    def _on_active_layer(self, event=None) -> None:
        layer = self.image_layer()
        if self._watched is not None:
            self._watched.events.contrast_limits.disconnect(self._show_window)
            self._watched = None
        if layer is None:
            self.geometry_label.setText("no study")
            return
        layer.events.contrast_limits.connect(self._show_window)
        self._watched = layer
        self._is_ct = _is_ct(layer)
        self._show_window()
        self.geometry_label.setText(_geometry_text(layer, self._is_ct))

    def _show_window(self, event=None) -> None:
        layer = self._watched
        if layer is None:
            return
        width, level = limits_to_window(*layer.contrast_limits)
        for spin, value in ((self.width_spin, width), (self.level_spin, level)):
            spin.blockSignals(True)
            spin.setValue(value)
            spin.blockSignals(False)

    # --- views and cursor ----------------------------------------------------
    def show_mpr(self, shown: bool) -> None:
        """Axial, coronal and sagittal views, linked (``_qt/mpr.py``), on or off."""
        from .mpr import close_mpr, open_mpr

        if shown and self.mpr is None:
            self.mpr = open_mpr(self.viewer, on_cursor=self._show_point)
        elif not shown and self.mpr is not None:
            close_mpr(self.viewer, self.mpr)
            self.mpr = None

    def _on_cursor(self, event=None) -> None:
        self._show_point(self.viewer.cursor.position)

    def _show_point(self, world_zyx) -> None:
        self.cursor_label.setText(self.describe_point(world_zyx))

    def describe_point(self, world_zyx) -> str:
        """``"HU -850.0 at x … y … z … mm (LPS)"`` for a napari world position (z, y, x)."""
        layer = self.image_layer()
        if layer is None or len(world_zyx) < 3:
            return ""
        value = self.value_at(world_zyx)
        x, y, z = (float(v) for v in list(world_zyx)[-3:][::-1])
        unit = "HU" if self._is_ct else "value"
        shown = "outside" if value is None else f"{value:.1f}"
        return f"{unit} {shown} at x {x:.1f}, y {y:.1f}, z {z:.1f} mm (LPS)"

    def value_at(self, world_zyx) -> float | None:
        """The selected image's voxel value at a world point (z, y, x), or None outside it.

        Unlike ``layer.get_value`` (which reads the displayed slice), this honours
        the point's own slice position, so any world point can be asked about.
        """
        layer = self.image_layer()
        if layer is None:
            return None
        index = np.round(np.asarray(layer.world_to_data(tuple(world_zyx)), dtype=float)).astype(int)
        if np.any(index < 0) or np.any(index >= np.asarray(layer.data.shape)[:len(index)]):
            return None
        value = np.asarray(layer.data[tuple(index)], dtype=float)
        return float(value if value.ndim == 0 else value[:3].mean())  # an RGB picture: mean of its colours


def _read_as_layer(path, series_uid, name) -> tuple[list[str], tuple]:
    """Worker side of opening: the volume and its layer data (window, ranges) off the GUI thread."""
    volume = read_volume(path, series_uid=series_uid)
    return volume.warnings, volume_layer_data(volume, name)


def _widen_slider_range(layer) -> None:
    """napari pins the contrast slider's range to the initial window; let it reach all the data."""
    if isinstance(layer, Image) and GEOMETRY_KEY in layer.metadata:
        low, high = layer.contrast_limits
        data_low, data_high = layer.metadata.get("data_range") or (float(np.min(layer.data)),
                                                                    float(np.max(layer.data)))
        layer.contrast_limits_range = (min(low, data_low), max(high, data_high))


class _NoStudy(MedvisionError):
    pass


def _to_layer(layer_data: tuple):
    from napari.layers import Layer

    data, kwargs, kind = layer_data
    return Layer.create(data, kwargs, kind)


def _is_ct(layer) -> bool:
    from ..core.windowing import looks_like_ct

    return looks_like_ct(layer.data, layer.metadata.get("modality"))


def _geometry_text(layer, is_ct: bool) -> str:
    geometry = layer.metadata.get(GEOMETRY_KEY)
    modality = layer.metadata.get("modality") or ("CT (by its HU range)" if is_ct else "unknown")
    if not geometry:
        return f"{layer.name}: no source geometry (not opened by MedVision); modality {modality}"
    fmt = lambda values: ", ".join(f"{v:.4g}" for v in values)  # noqa: E731
    size = geometry["shape"][::-1]
    return (f"{layer.name}\nmodality: {modality}\nsize (x, y, z): {fmt(size)}\n"
            f"spacing: {fmt(geometry['spacing'])} mm\norigin: {fmt(geometry['origin'])} mm (LPS)\n"
            f"direction: {fmt(geometry['direction'])}")
