"""Show in the Run-model dock only the options the selected model's task uses.

The dock keeps every option widget (its ``run`` reads them all; :func:`run_model` drops what a task
does not know); this only hides the rows that do not apply, labels included.
"""

from __future__ import annotations

from qtpy.QtWidgets import QFormLayout, QWidget

from ..core.errors import MedvisionError
from ..core.inference.run import accepted_options

#: run_model option name -> attribute of the dock holding its widget.
OPTION_WIDGETS = {
    "overlap": "overlap_spin",
    "sw_batch_size": "batch_spin",
    "tta": "tta_check",
    "keep_probabilities": "probabilities_check",
    "uncertainty": "uncertainty_check",
    "min_component_mm3": "cleanup_spin",
    "score_threshold": "score_spin",
    "explain": "explain_check",
}


def show_task_options(dock, model) -> list[str]:
    """Hide the dock's option rows ``model`` does not take; returns the options left shown.

    No model (or one whose task cannot be read) hides them all.
    """
    try:
        accepted = accepted_options(model) if model is not None else frozenset()
    except MedvisionError:
        accepted = frozenset()
    shown, boxes = [], set()
    for option, attribute in OPTION_WIDGETS.items():
        widget = getattr(dock, attribute, None)
        if widget is None:
            continue
        visible = option in accepted
        _set_row_visible(widget, visible)
        boxes.add(widget.parentWidget())
        if visible:
            shown.append(option)
    for box in boxes:  # the "Options" group itself, when nothing in it applies
        if box is not None and box is not dock:
            box.setVisible(any(not w.isHidden() for w in box.findChildren(QWidget) if _is_option(dock, w)))
    return shown


def _is_option(dock, widget) -> bool:
    return any(getattr(dock, attribute, None) is widget for attribute in OPTION_WIDGETS.values())


def _set_row_visible(widget: QWidget, visible: bool) -> None:
    widget.setVisible(visible)
    parent = widget.parentWidget()
    layout = parent.layout() if parent is not None else None
    if isinstance(layout, QFormLayout):
        label = layout.labelForField(widget)
        if label is not None:
            label.setVisible(visible)
