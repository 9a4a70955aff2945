"""The demo window laid out like a reading workstation: the screen used, the image canvas wide,
MedVision's docks in one narrow tabbed column, the study fitted and a hint of what to try.

Only window layout lives here (no dock's own behaviour), so the docks stay usable on their own in
any napari window.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication, QComboBox, QFrame, QScrollArea, QVBoxLayout, QWidget

#: Width of the docks' column in pixels; wider content scrolls sideways rather than widening it.
DOCK_COLUMN_WIDTH = 390
HINT = ("Try: Run model ▸ Run  ·  Annotate ▸ New structure, click an organ  ·  correct with the brush  ·  "
        "Fine-tune ▸ Add case, Start  ·  Study ▸ MPR")
RADIOGRAPH_HINT = "Try: Run model ▸ Run (nodule probability and where the model looked)  ·  medvision demo: the CT"
#: Label names drawn transparent in the demo: the body outline would tint the whole patient.
SILENT_LABELS = ("body",)


def settle(rounds: int = 10) -> None:
    """Let Qt lay out and paint what was just shown or resized."""
    app = QApplication.instance()
    for _ in range(rounds):
        app.processEvents()


def fill_screen(viewer) -> None:
    """Size the viewer's window to the screen it is on (and ask the window manager to maximise it).

    Without a window manager (Xvfb) ``showMaximized`` alone does nothing, hence the geometry first.
    """
    window = viewer.window._qt_window
    screen = window.screen() or QApplication.primaryScreen()
    window.setGeometry(screen.availableGeometry())
    window.showMaximized()


def make_scrollable(widget: QWidget) -> QScrollArea:
    """Put ``widget``'s content in a vertical scroll area inside ``widget`` itself.

    The widget stays the object napari docked (``viewer.window.dock_widgets`` still returns it, with
    all its attributes); only its layout moves one level down, so a tall dock scrolls instead of
    making the window taller than the screen.
    """
    content = QWidget()
    content.setLayout(widget.layout())  # Qt moves the layout and re-parents its widgets to `content`
    scroll = QScrollArea(widget)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setWidgetResizable(True)
    scroll.setWidget(content)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    return scroll


def compact_choosers(widget: QWidget, characters: int = 12) -> None:
    """Let the drop-down lists in ``widget`` be narrower than their longest entry (it still shows
    in full when the list opens)."""
    for combo in widget.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(characters)
        # An explicit minimum: Qt's minimumSizeHint of a combo still follows its longest entry.
        combo.setMinimumWidth(combo.fontMetrics().averageCharWidth() * characters + 40)


def dock_of(widget: QWidget):
    """The QDockWidget holding ``widget`` (napari's wrapper), or None."""
    from qtpy.QtWidgets import QDockWidget

    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent


def narrow_column(viewer, widgets: list[QWidget], width: int = DOCK_COLUMN_WIDTH) -> None:
    """Make the (tabbed) docks of ``widgets`` one column ``width`` pixels wide, each scrolling.

    Call it once the window has its final size (:func:`fill_screen`): Qt shares out the width then.
    """
    docks = []
    for widget in widgets:
        if not isinstance(widget.layout().itemAt(0).widget() if widget.layout().count() else None, QScrollArea):
            make_scrollable(widget)
        compact_choosers(widget)
        dock = dock_of(widget)
        dock.setMinimumSize(200, 50)   # the minimum Qt took from the content before it could scroll
        docks.append(dock)
    settle()
    viewer.window._qt_window.resizeDocks(docks, [width] * len(docks), Qt.Orientation.Horizontal)
    docks[0].raise_()
    settle()


def quiet_labels(layer, names=SILENT_LABELS) -> None:
    """Draw the labels called ``names`` (e.g. "body") transparent, the others as they were."""
    from napari.utils.colormaps import DirectLabelColormap

    label_names = layer.metadata.get("label_names") or {}
    silent = {int(value) for value, name in label_names.items() if name in names}
    if not silent:
        return
    colors = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0)}
    for value in map(int, label_names):
        colors[value] = (0, 0, 0, 0) if value in silent else tuple(layer.colormap.map(value))
    layer.colormap = DirectLabelColormap(color_dict=colors)


def show_hint(viewer, text: str = HINT) -> None:
    """A one-line hint over the canvas (napari's text overlay), bottom left, small."""
    overlay = viewer.text_overlay if not hasattr(viewer.canvas, "overlays") else viewer.canvas.overlays.text
    overlay.text = text
    overlay.font_size = 9
    overlay.position = "bottom_left"   # the top centre holds the orientation letter in MPR
    overlay.visible = True


def fit_study(viewer) -> None:
    """Fit the study to the canvas as it is now (call after the docks are placed and shown)."""
    settle()
    viewer.reset_view()
    settle()
