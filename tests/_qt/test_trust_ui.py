"""The Run-model dock shows what a model would run before Run, and remembers the Trust tick."""

import json

import numpy as np
import pytest
from napari.layers import Layer

from napari_medvision._napari.layers import image_layer_data
from napari_medvision._qt.inference_widget import InferenceWidget
from napari_medvision.core.models import load_bundle, trust_store
from napari_medvision.core.phantom import generate_phantom
from tests.bundles import threshold_bundle

pytestmark = pytest.mark.gui


@pytest.fixture
def widget(make_napari_viewer):
    viewer = make_napari_viewer()
    case = generate_phantom(4, shape=(20, 48, 48), spacing=(6.0, 6.0, 10.0))
    viewer.add_layer(Layer.create(*image_layer_data(case.image, "phantom")))
    return InferenceWidget(viewer)


def risky_bundle(folder):
    folder = threshold_bundle(folder)
    config = json.loads((folder / "configs" / "inference.json").read_text())
    config["network_def"]["kernel_size"] = "$abs(1)"
    config["inferer"]["_target_"] = "scripts.inferer.Inferer"
    (folder / "configs" / "inference.json").write_text(json.dumps(config))
    return folder


def test_findings_show_before_run_and_trust_is_remembered_per_content(widget, qtbot, tmp_path):
    folder = risky_bundle(tmp_path / "risky")
    widget.set_bundles([load_bundle(folder)])
    qtbot.waitUntil(lambda: widget.trust_check.isEnabled(), timeout=60000)
    text = widget.trust_label.text()
    assert "network_def::kernel_size" in text and "scripts.inferer.Inferer" in text
    assert not widget.trust_check.isChecked()

    widget.trust_check.setChecked(True)
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120000)
    assert [r["name"] for r in trust_store.trusted_bundles()] == ["risky"]

    widget.set_bundles([load_bundle(folder)])  # a fresh look at the same files: still trusted
    qtbot.waitUntil(lambda: widget.trust_check.isEnabled(), timeout=60000)
    assert widget.trust_check.isChecked()

    (folder / "configs" / "inference.json").write_text(
        (folder / "configs" / "inference.json").read_text().replace("abs(1)", "abs(1) + 0"))
    widget.set_bundles([load_bundle(folder)])  # edited: asks again
    qtbot.waitUntil(lambda: widget.trust_check.isEnabled(), timeout=60000)
    assert not widget.trust_check.isChecked()


def test_a_model_without_code_needs_no_trust(widget, qtbot, tmp_path):
    widget.set_bundles([load_bundle(threshold_bundle(tmp_path / "plain"))])
    qtbot.waitUntil(lambda: "no trust needed" in widget.trust_label.text(), timeout=60000)
    assert not widget.trust_check.isEnabled()
