"""Axial, coronal and sagittal views of one study, linked by one point (MPR).

The viewer's own canvas stays the axial view; the coronal and sagittal views are extra napari
canvases (``QtViewer`` on a ``ViewerModel``) in a dock below it, as in napari's
``multiple_viewer_widget`` example. napari keeps a layer's slice inside the layer, so one layer
object cannot be drawn in two orientations at once: each extra view holds a mirror of every layer
made from ``layer.as_layer_data_tuple()``, whose ``data`` IS the original array (a brush stroke in
any view changes the one array; the other views are refreshed), and whose display settings
(window/level, colormap, opacity, visibility, selected label, tool) follow the original.

World axes are LPS millimetres in napari's (z, y, x) order, so the radiological convention is set
on the cameras only (the data and the layers' transforms are untouched):

* axial: rows = y (anterior at the top: y grows downward, to posterior), columns = x (patient's
  right on the screen's left: x grows to the patient's left);
* coronal: rows = z shown upward (superior at the top), columns = x;
* sagittal: rows = z shown upward, columns = y (anterior on the left).

One point (``dims.point``, world mm) is shared: scrolling a view moves its slice and the others'
reference lines; a click (no drag, pan/zoom tool) puts the point there, which moves the other
views' slices.
"""

from __future__ import annotations

import numpy as np
from napari.components import ViewerModel
from napari.components.overlays import TextOverlay
from napari.layers import Labels, Layer, Vectors
from napari.qt import QtViewer
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QSplitter, QVBoxLayout, QWidget

#: name -> (world axes shown as (rows, columns), camera orientation2d (rows, columns)).
VIEWS = {
    "axial": ((1, 2), ("down", "right")),
    "coronal": ((0, 2), ("up", "right")),
    "sagittal": ((0, 1), ("up", "right")),
}
#: Patient direction of each world axis growing (+) and shrinking (-): LPS.
AXIS_LETTERS = {0: ("S", "I"), 1: ("P", "A"), 2: ("L", "R")}
#: Layer settings a mirror copies from its original whenever they change.
SHARED = ("visible", "opacity", "blending", "contrast_limits", "colormap", "gamma", "selected_label",
          "contour", "show_selected_label", "mode", "brush_size", "affine", "edge_color", "face_color")
CROSS_KEY = "medvision_mpr_cross"
LETTER_PREFIX = "mpr_"
CROSS_COLOUR = "#ffd91ab3"  # amber, a little transparent


def orientation_letters(view: str) -> dict[str, str]:
    """The patient direction at each edge of ``view``: ``{"top_center": "A", "middle_left": "R", ...}``."""
    (rows, columns), (down_or_up, right_or_left) = VIEWS[view]
    plus, minus = AXIS_LETTERS[rows]
    top, bottom = (minus, plus) if down_or_up == "down" else (plus, minus)
    plus, minus = AXIS_LETTERS[columns]
    left, right = (minus, plus) if right_or_left == "right" else (plus, minus)
    return {"top_center": top, "bottom_center": bottom, "middle_left": left, "middle_right": right}


def dims_order(view: str) -> tuple[int, int, int]:
    """napari's ``dims.order`` that puts ``view``'s (rows, columns) last: the displayed axes."""
    shown = VIEWS[view][0]
    hidden = next(axis for axis in range(3) if axis not in shown)
    return (hidden, *shown)


def set_view(model: ViewerModel, view: str) -> None:
    """Show ``view`` on ``model``: displayed axes, camera orientation and the R/L A/P S/I letters."""
    model.dims.order = dims_order(view)
    camera = model.scene.camera if hasattr(model, "scene") else model.camera
    camera.orientation2d = VIEWS[view][1]
    overlays = model.canvas.overlays
    for position, letter in orientation_letters(view).items():
        overlays[LETTER_PREFIX + position] = TextOverlay(text=letter, position=position, visible=True,
                                                         font_size=14, color="yellow")


def mirror_of(layer: Layer, view: str) -> Layer:
    """A layer drawing ``layer``'s very data array (``mirror.data is layer.data``) for another view."""
    data, state, kind = layer.as_layer_data_tuple()
    state = {**state, "metadata": {**state.get("metadata", {}), "medvision_mpr_view": view}}
    return Layer.create(layer.data, state, kind)


class MprViews(QWidget):
    """The coronal and sagittal canvases, side by side, linked to the viewer's (axial) canvas."""

    def __init__(self, viewer, on_cursor=None):
        super().__init__()
        self.viewer = viewer
        self.on_cursor = on_cursor
        self.models = {name: ViewerModel(title=name) for name in ("coronal", "sagittal")}
        self.canvases = {name: QtViewer(model, show_welcome_screen=False) for name, model in self.models.items()}
        self._mirrors: dict[int, dict[str, Layer]] = {}
        self._links: list[tuple] = []
        self._syncing = False
        splitter = QSplitter(Qt.Orientation.Horizontal)
        for canvas in self.canvases.values():
            splitter.addWidget(canvas)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self._crosses = {}
        hint = viewer.canvas.overlays.text     # the demo's hint would run under the letters
        self._hint_was_visible, hint.visible = hint.visible, False
        for layer in list(viewer.layers):
            self._add(layer)
        self._add_crosses()
        self._connect(viewer.layers.events.inserted, self._on_inserted)
        self._connect(viewer.layers.events.removed, self._on_removed)
        self._connect(viewer.layers.selection.events.active, self._on_active)
        for name, model in self.all_models().items():
            set_view(model, name)
            self._connect(model.dims.events.point, self._on_point)
            model.mouse_drag_callbacks.append(self._click_to_move)
        for model in self.models.values():
            self._connect(model.cursor.events.position, self._on_mirror_cursor)
            self._connect(model.events.status, self._on_mirror_status)
            model.dims.point = viewer.dims.point
            model.reset_view()
        self._update_crosses()

    # --- models ------------------------------------------------------------------
    def all_models(self) -> dict[str, ViewerModel]:
        """The axial (the viewer itself), coronal and sagittal view models."""
        return {"axial": self.viewer, **self.models}

    def mirrors(self, layer: Layer) -> dict[str, Layer]:
        """``{"coronal": mirror, "sagittal": mirror}`` of one of the viewer's layers."""
        return self._mirrors[id(layer)]

    def close_views(self) -> None:
        """Undo everything: links, mirrors, crosses, letters; the viewer is as before."""
        for emitter, callback in self._links:
            emitter.disconnect(callback)
        self._links = []
        if self._click_to_move in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._click_to_move)
        cross = self._crosses.get("axial")
        if cross is not None and cross in self.viewer.layers:
            self.viewer.layers.remove(cross)
        for key in [k for k in self.viewer.canvas.overlays if str(k).startswith(LETTER_PREFIX)]:
            del self.viewer.canvas.overlays[key]
        self.viewer.canvas.overlays.text.visible = self._hint_was_visible
        for canvas in self.canvases.values():
            canvas.close()

    def _connect(self, emitter, callback) -> None:
        emitter.connect(callback)
        self._links.append((emitter, callback))

    # --- layers ------------------------------------------------------------------
    def _add(self, layer: Layer, index: int | None = None) -> None:
        if layer.metadata.get(CROSS_KEY):
            return
        mirrors = {}
        for name, model in self.models.items():
            mirror = mirror_of(layer, name)
            model.layers.insert(len(model.layers) if index is None else index, mirror)
            mirrors[name] = mirror
        self._mirrors[id(layer)] = mirrors
        for setting in SHARED:
            emitter = getattr(layer.events, setting, None)
            if emitter is not None:
                self._connect(emitter, lambda event, layer=layer, setting=setting: self._copy(layer, setting))
        if isinstance(layer, Labels):
            for source in (layer, *mirrors.values()):
                for event in ("paint", "labels_update"):
                    self._connect(getattr(source.events, event),
                                  lambda event, layer=layer, source=source: self._refresh(layer, source))

    def _copy(self, layer: Layer, setting: str) -> None:
        value = getattr(layer, setting)
        for mirror in self._mirrors.get(id(layer), {}).values():
            try:
                setattr(mirror, setting, value)
            except (ValueError, TypeError):  # e.g. a mode the mirror's type has not
                pass

    def _refresh(self, layer: Layer, source: Layer) -> None:
        """A brush stroke changed the shared array: redraw every other view of it."""
        if self._syncing:
            return
        self._syncing = True
        try:
            for other in (layer, *self._mirrors[id(layer)].values()):
                if other is not source:
                    other.refresh()
        finally:
            self._syncing = False

    def _on_inserted(self, event) -> None:
        self._add(event.value, event.index)
        self._update_crosses()

    def _on_removed(self, event) -> None:
        mirrors = self._mirrors.pop(id(event.value), {})
        for name, mirror in mirrors.items():
            self.models[name].layers.remove(mirror)

    def _on_active(self, event) -> None:
        active = event.value
        for name, model in self.models.items():
            mirror = self._mirrors.get(id(active), {}).get(name) if active is not None else None
            model.layers.selection.active = mirror

    # --- the shared point --------------------------------------------------------
    def _on_point(self, event) -> None:
        if self._syncing:
            return
        point = tuple(event.value)
        self._syncing = True
        try:
            for model in self.all_models().values():
                if tuple(model.dims.point) != point and model.dims.ndim == len(point):
                    model.dims.point = point
        finally:
            self._syncing = False
        self._update_crosses()

    def point(self) -> np.ndarray:
        """The shared point, world (z, y, x) mm."""
        return np.asarray(self.viewer.dims.point, dtype=float)

    def move_to(self, world_zyx) -> None:
        """Put the shared point at ``world_zyx``: every view's slice and reference lines follow."""
        self.viewer.dims.point = tuple(float(v) for v in world_zyx)

    def _click_to_move(self, model, event):
        """A click without drag, with the pan/zoom tool, moves the point there."""
        active = model.layers.selection.active
        if event.button != 1 or getattr(active, "mode", "pan_zoom") != "pan_zoom":
            return
        yield
        moved = False
        while event.type == "mouse_move":
            moved = True
            yield
        if not moved:
            point = self.point()
            shown = list(model.dims.displayed)
            point[shown] = np.asarray(event.position, dtype=float)[shown]
            self.move_to(point)

    def _on_mirror_cursor(self, event) -> None:
        if self.on_cursor is not None:
            self.on_cursor(tuple(event.value))

    def _on_mirror_status(self, event) -> None:
        self.viewer.status = event.value

    # --- reference lines -----------------------------------------------------------
    def _add_crosses(self) -> None:
        active = self.viewer.layers.selection.active
        for name, model in self.all_models().items():
            cross = Vectors(np.zeros((3, 2, 3)), name=".mpr cross", edge_color=CROSS_COLOUR, edge_width=1.0,
                            vector_style="line", metadata={CROSS_KEY: True})
            self._crosses[name] = cross
            model.layers.append(cross)
        self.viewer.layers.selection.active = active

    def _update_crosses(self) -> None:
        """Three lines through the point, along z, y and x, across the studies' extent: each view
        shows the two lying in its plane (the other views' slices)."""
        layers = [layer for layer in self.viewer.layers if not layer.metadata.get(CROSS_KEY)]
        if not layers:
            return
        low, high = self.viewer.layers.get_extent(layers).world
        for model in self.all_models().values():
            cross = self._crosses.get(model.title if model is not self.viewer else "axial")
            if cross is None:
                continue
            point = np.asarray(model.dims.point, dtype=float)
            lines = np.zeros((3, 2, 3))
            for axis in range(3):
                lines[axis, 0] = point
                lines[axis, 0, axis] = low[axis]
                lines[axis, 1, axis] = high[axis] - low[axis]
            cross.data = lines


def open_mpr(viewer, on_cursor=None) -> MprViews:
    """Add the coronal and sagittal views in a dock under the viewer's canvas, which shows axial.

    The left and right dock columns keep the window's full height (the dock takes only the
    canvas's width); every view is fitted to its canvas.
    """
    from .workstation import settle

    viewer = getattr(viewer, "__wrapped__", viewer)   # napari hands plugin docks a public-only proxy
    views = MprViews(viewer, on_cursor)
    window = viewer.window._qt_window
    window.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
    window.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
    views.dock = viewer.window.add_dock_widget(views, name="MPR views", area="bottom")
    window.resizeDocks([views.dock], [max(window.height() // 2 - 40, 200)], Qt.Orientation.Vertical)
    settle()
    for model in views.all_models().values():
        model.reset_view()
    return views


def close_mpr(viewer, views: MprViews) -> None:
    """Remove the views' dock and every link, mirror and mark they added."""
    views.close_views()
    getattr(viewer, "__wrapped__", viewer).window.remove_dock_widget(views.dock)
