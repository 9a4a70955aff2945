"""The Annotate dock: clicks (and a box) -> a 3D mask preview, accepted into a label of a labels layer;
slice tools on that label. The dock only gathers prompts and layers; the engines and tools live in
core/interactive. Clicks are segmented in the dock's own warm worker process (``core.backend``, role
"interactive"), the image sent there once through shared memory; a new click cancels the run in
flight, and only the latest click's mask is shown."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from napari.layers import Image, Labels, Points
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.backend import shared_backend
from ..core.backend.transfer import Shared
from ..core.errors import MedvisionError
from ..core.interactive import Prompts, available_engines, slice_tools
from ..core.interactive.prompts import PromptError
from ..core.interactive.job import SEGMENT
from .._napari.layers import geometry_metadata, layer_volume
from .box_prompt import BOX_LAYER, add_box_layer, box_from_shapes, box_layer
from .restart_offer import RestartOffer
from .saving import BackgroundWrites, snapshot
from .workers import report_error, start_engine, start_worker
from .zoo_engines import BundleEngines

log = logging.getLogger(__name__)

PROMPTS_LAYER = "prompts"
PREVIEW_LAYER = "interactive preview"
COLOURS = {"+": "lime", "-": "red"}
_BEFORE_CHANGE = ("adding", "removing", "changing")   # napari's ActionType values of the announcing events


class InteractiveWidget(QWidget):
    """Click-based annotation of one structure at a time, plus slice tools."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.tool_worker = None      # a slice tool computing (one at a time)
        self.backend = shared_backend("interactive")   # clicks compute here; its worker starts now
        self.generation = 0          # runs whose number is not the latest are stale: their mask is dropped
        self._shown = -1             # generation of the preview on screen
        self.writes = BackgroundWrites()
        self._build()
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        self._on_layers_changed()

    # --- layout --------------------------------------------------------------
    def _build(self) -> None:
        self.image_combo, self.labels_combo, self.engine_combo = QComboBox(), QComboBox(), QComboBox()
        self.engine_combo.addItems(["best for the image", *available_engines()])
        self.label_value = QSpinBox()
        self.label_value.setRange(1, 65535)
        form = QFormLayout()
        for text, widget in (("Image", self.image_combo), ("Into labels", self.labels_combo),
                             ("Label", self.label_value), ("Engine", self.engine_combo)):
            form.addRow(text, widget)
        self.bundle_engines = BundleEngines(self.engine_combo, self)   # zoo bundles, fine-tuned versions
        self._refresh_engines()
        form.addRow(self.bundle_engines)
        self.start_button = QPushButton("New structure (clicks)")
        self.sign_button = QPushButton("Clicking: + inside  (i / o / t)")
        self.sign_button.setCheckable(True)
        self.accept_button, self.undo_button = QPushButton("Accept"), QPushButton("Undo")
        self.start_button.clicked.connect(self.new_structure)
        self.box_button = QPushButton("Box: a rectangle on the first and on the last slice")
        self.box_button.clicked.connect(self.add_box)
        self.sign_button.toggled.connect(lambda negative: self.set_sign("-" if negative else "+"))
        self.accept_button.clicked.connect(self.accept)
        self.undo_button.clicked.connect(self.undo)
        row = QHBoxLayout()
        for button in (self.accept_button, self.undo_button):
            row.addWidget(button)
        tools = QGridLayout()
        self.tool_buttons = {}
        for i, (name, text) in enumerate((("interpolate", "Fill between slices"), ("fill", "Fill holes"),
                                          ("keep", "Keep clicked piece"), ("smooth", "Smooth"))):
            button = QPushButton(text)
            button.clicked.connect(lambda _=False, n=name: self.apply_tool(n))
            tools.addWidget(button, i // 2, i % 2)
            self.tool_buttons[name] = button
        self.store_edit = QLineEdit()
        self.store_edit.setPlaceholderText("case store folder")
        self.send_button = QPushButton("Send to case store")
        self.send_button.clicked.connect(lambda: self.send_to_store())
        self.store_edit.editingFinished.connect(self._refresh_engines)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.restart_offer = RestartOffer(self)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for widget in (self.start_button, self.sign_button, self.box_button):
            layout.addWidget(widget)
        layout.addLayout(row)
        layout.addWidget(QLabel("Slice tools (on the label above; each is one undo step)"))
        layout.addLayout(tools)
        layout.addWidget(self.store_edit)
        layout.addWidget(self.send_button)
        layout.addWidget(self.status)
        layout.addWidget(self.restart_offer)
        layout.addStretch()

    # --- prompts -------------------------------------------------------------
    def new_structure(self) -> Points | None:
        """A fresh prompts layer over the chosen image (in its voxel grid), in add mode."""
        image = self._layer(self.image_combo, Image)
        if image is None:
            report_error(MedvisionError("open an image first: clicks are placed on an image layer"))
            return None
        self._stop_run()   # the previous structure's run in flight: its mask is not this one's
        for name in (PROMPTS_LAYER, PREVIEW_LAYER, BOX_LAYER):
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        points = self.viewer.add_points(np.zeros((0, image.ndim)), name=PROMPTS_LAYER, affine=image.affine,
                                        features={"sign": np.array([], dtype=object)}, size=4,
                                        border_color="white", face_color="lime", ndim=image.ndim)
        points.feature_defaults["sign"] = "+"
        points.mode = "add"
        for key, sign in (("i", "+"), ("o", "-")):
            points.bind_key(key, lambda _layer, s=sign: self.set_sign(s), overwrite=True)
        points.bind_key("t", lambda _layer: self.set_sign("-" if self.sign == "+" else "+"), overwrite=True)
        points.events.data.connect(self._on_points_changed)
        self.set_sign("+")
        return points

    @property
    def sign(self) -> str:
        return "-" if self.sign_button.isChecked() else "+"

    def set_sign(self, sign: str) -> None:
        """Make the next click positive (``+``) or negative (``-``)."""
        if self.sign_button.isChecked() != (sign == "-"):
            self.sign_button.setChecked(sign == "-")
        self.sign_button.setText(f"Clicking: {sign} {'inside' if sign == '+' else 'outside'}  (i / o / t)")
        points = self._prompts_layer()
        if points is not None:
            points.feature_defaults["sign"] = sign
            points.current_face_color = COLOURS[sign]

    def prompts(self) -> Prompts:
        """The clicks of the prompts layer as voxel indices ``(z, y, x)`` of the image."""
        points = self._prompts_layer()
        if points is None or not len(points.data):
            return Prompts(box=self._box())
        index = _zyx(np.rint(points.data).astype(int))
        signs = np.asarray(points.features["sign"], dtype=object)
        return Prompts(index[signs == "+"], index[signs == "-"], self._box())

    def add_box(self):
        """A Shapes layer for the optional box; every rectangle drawn reruns the segmentation."""
        image = self._layer(self.image_combo, Image)
        if image is None:
            report_error(MedvisionError("open an image first: the box is drawn on an image layer"))
            return None
        shapes = add_box_layer(self.viewer, image)
        shapes.events.data.connect(lambda event=None: None if _announcing(event) else self.run())
        self.status.setText("box: draw a rectangle on the slice where the structure starts and one where it ends")
        return shapes

    def _box(self):
        image = self._layer(self.image_combo, Image)
        return None if image is None else box_from_shapes(box_layer(self.viewer), _volume_shape(image))

    def _on_points_changed(self, event=None) -> None:
        if _announcing(event):
            return
        points = self._prompts_layer()
        if points is not None and len(points.data):
            colours = [COLOURS.get(s, "lime") for s in points.features["sign"]]
            if len(colours) == len(points.data):
                points.face_color = colours
        self.run()

    # --- running -------------------------------------------------------------
    def run(self):
        """Segment from the current prompts in the backend's worker; returns the napari worker driving
        the job (None without a positive click or a box). The run in flight, now stale, is cancelled."""
        self._stop_run()
        image_layer = self._layer(self.image_combo, Image)
        try:
            prompts = self.prompts()
            if image_layer is None or (not prompts.clicks and prompts.box is None):
                self._drop_preview("")
                return None
            volume = layer_volume(image_layer)
            prompts.check(volume.shape)   # only negative clicks, outside the image: here, not in the worker
        except PromptError as exc:   # nothing runs, and no stale preview is left to accept
            self._drop_preview("not run: no layer was changed")
            report_error(exc)
            return None
        try:
            options = self.bundle_engines.job_options()
        except MedvisionError as exc:   # an untrusted bundle: nothing runs
            self.status.setText("not run: no layer was changed")
            report_error(exc)
            return None
        engine = options.pop("engine", None if self.engine_combo.currentIndex() == 0 else
                             self.engine_combo.currentText())
        if options:   # a bundle: it may reorient, so it gets the image's geometry
            options.update(origin=volume.origin, direction=volume.direction)
        generation = self.generation
        self.status.setText(f"segmenting from {prompts.clicks} click(s)…")
        job = self.bundle_engines.wrap(self.backend.run(SEGMENT, Shared(volume.array), volume.spacing, prompts,
                                                        engine, **options))
        self.worker = start_engine(job, on_progress=lambda _: None,
                                   on_result=lambda mask: self._show(mask, generation, image_layer),
                                   on_error=lambda exc: self._on_error(exc, generation),
                                   on_finished=lambda: self._finished(generation))
        return self.worker

    def _stop_run(self) -> None:
        """Make the run in flight stale (its result is dropped: its generation is old) and cancel it."""
        self.generation += 1
        if self.worker is not None:
            self.worker.quit()
            self.backend.cancel()
            self.worker = None

    def _finished(self, generation: int) -> None:
        if generation == self.generation:
            self.worker = None

    def _on_error(self, exc: Exception, generation: int) -> None:
        """One notification for the latest click's failure; a superseded click's is only logged."""
        if generation != self.generation:
            log.info("a superseded click's run failed: %s", exc)
            return
        self.status.setText("failed: no layer was changed")
        report_error(exc)
        self.restart_offer.offer_if_died(exc)

    def _drop_preview(self, status: str) -> None:
        if PREVIEW_LAYER in self.viewer.layers:
            self.viewer.layers.remove(PREVIEW_LAYER)
        self.status.setText(status)

    def _show(self, mask: np.ndarray, generation: int, image_layer: Image) -> None:
        if generation != self.generation:
            return  # a newer click has started another run
        if image_layer not in self.viewer.layers:
            self.status.setText("the image was closed while its clicks were computed: nothing is shown")
            return
        self._shown = generation
        mask = mask.reshape(_grid_shape(image_layer))   # a 2D image layer's preview is 2D
        if PREVIEW_LAYER in self.viewer.layers:
            self.viewer.layers[PREVIEW_LAYER].data = mask
        else:
            self.viewer.add_labels(mask, name=PREVIEW_LAYER, affine=image_layer.affine, opacity=0.5,
                                   metadata=dict(image_layer.metadata))
            self.viewer.layers.selection.active = self._prompts_layer() or self.viewer.layers.selection.active
        self.status.setText(f"preview: {int(mask.sum())} voxels; Accept puts them into label "
                            f"{self.label_value.value()}")

    def add_engine(self, name_or_path, select: bool = False):
        """Offer an interactive bundle (a zoo bundle, a fine-tuned version) in the engine list."""
        return self.bundle_engines.add(name_or_path, select=select)

    def _refresh_engines(self) -> None:
        store = self.store_edit.text().strip() if hasattr(self, "store_edit") else ""
        self.bundle_engines.refresh([store] if store and Path(store).is_dir() else [])

    # --- accepting and undo ----------------------------------------------------
    def target(self, create: bool = True) -> Labels | None:
        """The chosen labels layer; a new empty one on the image's grid when there is none."""
        labels = self._layer(self.labels_combo, Labels)
        image = self._layer(self.image_combo, Image)
        if labels is None and create and image is not None:
            labels = self.viewer.add_labels(np.zeros(_grid_shape(image), np.uint16), name="annotations",
                                            affine=image.affine,
                                            metadata=geometry_metadata(layer_volume(image)))
            self.labels_combo.setCurrentText(labels.name)
        return labels

    def accept(self) -> bool:
        """Put the preview into the chosen label (voxels of other labels are kept); one undo step."""
        if PREVIEW_LAYER not in self.viewer.layers:
            report_error(MedvisionError("click inside a structure first: there is no preview to accept"))
            return False
        if self._shown != self.generation:   # its worker may still be winding down: the result is in
            report_error(MedvisionError("the preview is not of your latest clicks yet (still computing, or that "
                                        "run failed): accept when its preview appears, or change a click"))
            return False
        labels = self.target()
        mask = np.asarray(self.viewer.layers[PREVIEW_LAYER].data).astype(bool)
        if labels is None or labels.data.shape != mask.shape:
            report_error(MedvisionError("choose a labels layer on the image's grid to accept into"))
            return False
        value = self.label_value.value()
        data = np.asarray(labels.data)
        free = mask & ((data == 0) | (data == value))
        kept = int(mask.sum() - free.sum())
        if not free.any():
            others = ", ".join(str(int(v)) for v in np.unique(data[mask])[:5])
            report_error(MedvisionError(f"nothing accepted: every voxel of the preview already belongs to other "
                                        f"labels ({others}), which Accept keeps; choose one of them or another "
                                        "labels layer"))
            return False
        labels.data_setitem(np.nonzero(free), value)
        self._stop_run()
        for name in (PREVIEW_LAYER, PROMPTS_LAYER, BOX_LAYER):
            self.viewer.layers.remove(name) if name in self.viewer.layers else None
        other = f"; {kept} voxels of other labels were kept" if kept else ""
        self.status.setText(f"accepted {int(free.sum())} voxels as label {value}{other} (Undo takes them back)")
        return True

    def undo(self) -> None:
        """Take back the last accept or slice tool (napari's labels undo: Ctrl+Z works as well)."""
        labels = self.target(create=False)
        if labels is not None:
            labels.undo()

    def apply_tool(self, name: str):
        """Run one slice tool on the chosen label in a worker; its change is one undo step. Returns the
        napari worker (None when it cannot start). A change is dropped, with a message, when the
        voxels it would set were edited while it ran."""
        labels = self.target(create=False)
        if labels is None:
            report_error(MedvisionError("choose a labels layer for the slice tools"))
            return None
        if self.tool_worker is not None:
            report_error(MedvisionError("a slice tool is still running: wait for it"))
            return None
        layer_data = np.asarray(labels.data)
        data, value = layer_data.reshape(_volume_shape(labels)).copy(), self.label_value.value()
        try:
            if name == "interpolate":
                tool = lambda: slice_tools.interpolate_slices(data, value)   # noqa: E731
            elif name == "fill":
                tool = lambda: slice_tools.fill_holes(data, value)   # noqa: E731
            elif name == "keep":
                clicks = self.prompts()
                if not len(clicks.positive):
                    raise MedvisionError("add a + click on the piece to keep (New structure, then click it)")
                tool = lambda: slice_tools.keep_component(data, value, clicks.positive[-1])   # noqa: E731
            else:
                spacing = layer_volume(labels).spacing
                tool = lambda: slice_tools.smooth(data, value, spacing)   # noqa: E731
        except MedvisionError as exc:
            report_error(exc)
            return None

        def changes():
            new = tool()
            changed = np.nonzero(new != data)
            return changed, new[changed], data[changed]

        text = self.tool_buttons[name].text()
        self.status.setText(f"{text}…")
        self.tool_worker = start_worker(changes, description=text,
                                        on_result=lambda result: self._apply_change(labels, text, *result),
                                        on_error=lambda exc: self.status.setText(f"{text} failed: no label was changed"),
                                        on_finished=self._tool_done)
        return self.tool_worker

    def _tool_done(self) -> None:
        self.tool_worker = None

    def _apply_change(self, labels: Labels, text: str, changed, values, before) -> None:
        if labels not in self.viewer.layers:
            self.status.setText(f"{text}: the labels layer was closed; nothing changed")
            return
        if not len(changed[0]):
            self.status.setText(f"{text}: nothing to change (no undo step)")
            return
        grid = tuple(changed[1:]) if np.ndim(labels.data) == 2 else changed   # a 2D layer: no z
        if not np.array_equal(np.asarray(labels.data)[grid], before):
            report_error(MedvisionError(f"{text}: the label was edited while the tool ran, so nothing was "
                                        "changed; run it again"))
            return
        labels.data_setitem(grid, values)
        self.status.setText(f"{text}: {len(changed[0])} voxels changed")

    # --- case store ----------------------------------------------------------------
    def send_to_store(self, folder: str | None = None, case_id: str | None = None):
        """Write the image and the chosen labels layer to a case store as a corrected case (worker)."""
        from ..core.training import CaseStore
        from .._napari.results import MODEL_OUTPUT_KEY

        folder = folder or self.store_edit.text().strip()
        image_layer, labels = self._layer(self.image_combo, Image), self.target(create=False)
        if not folder or image_layer is None or labels is None:
            report_error(MedvisionError("give a case store folder and choose an image and a labels layer"))
            return None
        image, label = layer_volume(image_layer), snapshot(layer_volume(labels))
        values = sorted(int(v) for v in np.unique(label.array) if v)
        store = CaseStore(folder)
        if not (Path(folder) / "dataset.json").exists():
            store = CaseStore.create(folder, {"background": 0, **{f"label_{v}": v for v in values}},
                                     channel=image.modality or _guess_channel(image))
        original = labels.metadata.get(MODEL_OUTPUT_KEY)
        model_output = label.with_array(original) if original is not None and original.shape == label.shape else None
        case_id = (case_id or image_layer.name).strip().replace(" ", "_")
        return self.writes.run(store.add_case, case_id, image, label, model_output=model_output,
                               on_result=lambda _: self.status.setText(f"sent {case_id} to {folder}"),
                               description=f"Saving case {case_id}")

    # --- layers -------------------------------------------------------------------
    def _prompts_layer(self) -> Points | None:
        layer = self.viewer.layers[PROMPTS_LAYER] if PROMPTS_LAYER in self.viewer.layers else None
        return layer if isinstance(layer, Points) else None

    def _on_layers_changed(self, event=None) -> None:
        for combo, kind in ((self.image_combo, Image), (self.labels_combo, Labels)):
            current = combo.currentText()
            combo.clear()
            names = [layer.name for layer in self.viewer.layers
                     if isinstance(layer, kind) and layer.name != PREVIEW_LAYER]
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)

    def _layer(self, combo: QComboBox, kind):
        name = combo.currentText()
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        return layer if isinstance(layer, kind) else None


def _grid_shape(layer) -> tuple[int, ...]:
    """The voxel grid of an image or labels layer as napari shows it: its data's shape, less an RGB
    picture's colour axis."""
    shape = tuple(np.shape(layer.data))
    return shape[:-1] if getattr(layer, "rgb", False) else shape


def _volume_shape(layer) -> tuple[int, int, int]:
    """``(z, y, x)`` of a layer's grid: a 2D layer is one slice."""
    shape = _grid_shape(layer)
    return (1,) * (3 - len(shape)) + shape[-3:]


def _zyx(coordinates: np.ndarray) -> np.ndarray:
    """``(N, 3)`` voxel indices ``(z, y, x)`` of points on a 2D (``(y, x)``: z is 0) or 3D layer."""
    coordinates = np.asarray(coordinates).reshape(len(coordinates), -1)
    if coordinates.shape[1] < 3:
        coordinates = np.hstack([np.zeros((len(coordinates), 3 - coordinates.shape[1]), coordinates.dtype),
                                 coordinates])
    return coordinates[:, -3:]


def _announcing(event) -> bool:
    """Whether a points / shapes data event announces a change not made yet (napari sends one before
    and one after each change): the dock runs once, on the change itself."""
    return str(getattr(event, "action", "")) in _BEFORE_CHANGE


def _guess_channel(image) -> str:
    """A case store's channel name for a study without a modality: DX for a 2D picture, else CT or MR
    by its intensities."""
    from ..core.windowing import looks_like_ct

    if image.metadata.get("dimension") == 2:
        return "DX"
    return "CT" if looks_like_ct(image.array, None) else "MR"
