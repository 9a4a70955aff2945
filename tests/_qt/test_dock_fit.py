"""Docks show only what applies: the options of the selected model's task, a note instead of empty
plots, model descriptions that wrap in a narrow dock."""

import pytest

from napari_medvision._qt.inference_widget import InferenceWidget
from napari_medvision._qt.loss_plot import EMPTY_TEXT, LossPlot
from napari_medvision._qt.task_options import OPTION_WIDGETS
from napari_medvision.core.inference.run import accepted_options
from napari_medvision.core.models import load_bundle
from tests.bundles import classifier_bundle, detector_bundle, unet_bundle

pytestmark = pytest.mark.gui


def shown_options(widget) -> set[str]:
    return {option for option, attribute in OPTION_WIDGETS.items()
            if getattr(widget, attribute).isVisibleTo(widget)}


def test_run_model_dock_shows_only_the_selected_tasks_options(make_napari_viewer, tmp_path):
    widget = InferenceWidget(make_napari_viewer())
    bundles = [load_bundle(make(tmp_path / name)) for name, make in
               (("seg", unet_bundle), ("cls", classifier_bundle), ("det", detector_bundle))]
    widget.set_bundles(bundles)
    seen = {}
    for index, bundle in enumerate(bundles):
        widget.model_combo.setCurrentIndex(index)
        seen[bundle.task] = shown_options(widget)
        assert seen[bundle.task] == set(OPTION_WIDGETS) & accepted_options(bundle)
        label = widget.score_spin.parentWidget().layout().labelForField(widget.score_spin)
        assert label.isVisibleTo(widget) == ("score_threshold" in seen[bundle.task])
    assert "explain" in seen["classification"] and "explain" not in seen["segmentation"] | seen["detection"]
    assert "score_threshold" in seen["detection"]
    assert "score_threshold" not in seen["segmentation"] | seen["classification"]
    assert {"overlap", "tta", "uncertainty"} <= seen["segmentation"]


def test_long_model_description_wraps_in_a_narrow_dock(make_napari_viewer, tmp_path, qtbot):
    from napari_medvision._qt.workstation import compact_choosers, make_scrollable

    widget = InferenceWidget(make_napari_viewer())
    bundle = load_bundle(unet_bundle(tmp_path / "a_model_with_a_rather_long_name_indeed"))
    bundle.metadata["description"] = "A very long description of what this model does. " * 12
    widget.set_bundles([bundle])
    make_scrollable(widget)
    compact_choosers(widget)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.wait(20)                    # Qt recomputes the layouts' size hints of shown widgets
    assert widget.card.wordWrap()
    assert widget.minimumSizeHint().width() <= 400
    content = widget.layout().itemAt(0).widget().widget()
    assert content.minimumSizeHint().width() <= 400


def test_empty_training_plot_says_so(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    assert plot.is_empty() and not plot.empty_label.isHidden() and plot.canvas.isHidden()
    assert plot.empty_label.text() == EMPTY_TEXT and "no training yet" in EMPTY_TEXT
    plot.add_loss(0.5, 0.8)
    assert not plot.is_empty() and plot.empty_label.isHidden() and not plot.canvas.isHidden()
    plot.clear()
    assert plot.is_empty() and plot.canvas.isHidden()
