"""The Study dock in a real napari viewer (needs a display: pytest-xvfb provides one)."""

import numpy as np
import pytest
import SimpleITK as sitk

from napari_medvision._qt.study_widget import StudyWidget
from napari_medvision.core.io import write_volume
from napari_medvision.core.phantom import generate_phantom
from tests.conftest import make_image, write_dicom_series

pytestmark = pytest.mark.gui


@pytest.fixture
def phantom_file(tmp_path):
    case = generate_phantom(2, shape=(24, 64, 64), spacing=(5.0, 5.0, 10.0), lesion_probability=1.0,
                            direction=np.diag([-1.0, 1.0, 1.0]))
    return write_volume(case.image, tmp_path / "phantom ct.nii.gz"), case


@pytest.fixture
def widget(make_napari_viewer):
    viewer = make_napari_viewer()
    wait_for.widget = StudyWidget(viewer)
    return wait_for.widget


def wait_for(qtbot, worker):
    """Until the dock has let go of the worker (it does so when the worker finished)."""
    widget = wait_for.widget
    qtbot.waitUntil(lambda: widget._worker is not worker, timeout=60000)
    qtbot.wait(20)


def test_open_window_presets_and_hu_under_cursor(widget, qtbot, phantom_file):
    path, case = phantom_file
    wait_for(qtbot, widget.open_path(path))
    viewer = widget.viewer
    (layer,) = viewer.layers
    assert layer.name == "phantom ct.nii.gz"
    assert "spacing: 5, 5, 10 mm" in widget.geometry_label.text()

    widget.preset_combo.setCurrentText("Lung")
    assert tuple(layer.contrast_limits) == (-1350.0, 150.0)
    assert (widget.width_spin.value(), widget.level_spin.value()) == (1500.0, -600.0)
    widget.preset_combo.setCurrentText("Brain")
    assert tuple(layer.contrast_limits) == (0.0, 80.0)
    widget.preset_combo.setCurrentText("Bone")
    assert tuple(layer.contrast_limits) == (-500.0, 1300.0)
    layer.contrast_limits = (-200.0, 300.0)        # a drag in napari's own slider shows live
    assert (widget.width_spin.value(), widget.level_spin.value()) == (500.0, 50.0)
    widget.width_spin.setValue(400)
    widget.level_spin.setValue(-1000)
    widget.level_spin.editingFinished.emit()
    assert tuple(layer.contrast_limits) == (-1200.0, -800.0), "negative HU limits work"

    index_zyx = np.array([12, 30, 20])
    world_zyx = (layer.affine.affine_matrix @ [*index_zyx, 1.0])[:3]
    expected_lps = case.image.index_to_world(index_zyx[::-1].astype(float))
    np.testing.assert_allclose(world_zyx[::-1], expected_lps)
    assert widget.value_at(world_zyx) == case.image.array[tuple(index_zyx)]
    text = widget.describe_point(world_zyx)
    assert text.startswith(f"HU {float(case.image.array[tuple(index_zyx)]):.1f} at x {expected_lps[0]:.1f}")


def test_auto_window_for_mr(widget, qtbot, tmp_path):
    case = generate_phantom(1, shape=(16, 48, 48), spacing=(6, 6, 12), modality="MR")
    wait_for(qtbot, widget.open_path(write_volume(case.image, tmp_path / "t1.mha")))
    layer = widget.viewer.layers[0]
    widget.preset_combo.setCurrentText("Auto (1–99%)")
    low, high = layer.contrast_limits
    assert 0 <= low < high <= case.image.array.max()
    assert widget.describe_point((8, 0, 0)).startswith("value")


def test_dicom_folder_series_chooser(widget, qtbot, tmp_path):
    write_dicom_series(tmp_path, np.full((5, 8, 8), 40, np.int16), series_uid="1.2.3.1", description="Abdomen")
    write_dicom_series(tmp_path, np.full((2, 8, 8), -700, np.int16), series_uid="1.2.3.2",
                       description="Scout", file_names=["a.dcm", "b.dcm"])
    wait_for(qtbot, widget.scan_folder(tmp_path))
    items = [widget.series_combo.itemText(i) for i in range(widget.series_combo.count())]
    assert items == ["Abdomen — CT — 5 slices", "Scout — CT — 2 slices"]
    widget.series_combo.setCurrentIndex(1)
    wait_for(qtbot, widget.load_selected_series())
    (layer,) = widget.viewer.layers
    assert layer.name == "Scout" and layer.data.shape == (2, 8, 8) and layer.data.max() == -700


def test_label_with_other_geometry_is_refused_and_nothing_changes(widget, qtbot, tmp_path, monkeypatch):
    errors = []
    monkeypatch.setattr("napari_medvision._qt.workers.show_error", errors.append)
    sitk.WriteImage(make_image(geometry="anisotropic"), str(tmp_path / "ct.nrrd"))
    wrong = sitk.Cast(make_image(geometry="flipped_ras") > 0, sitk.sitkUInt8)
    sitk.WriteImage(wrong, str(tmp_path / "ct_label.nrrd"))
    wait_for(qtbot, widget.open_path(tmp_path / "ct.nrrd"))
    wait_for(qtbot, widget.open_label(tmp_path / "ct_label.nrrd"))
    assert len(widget.viewer.layers) == 1
    assert "does not match the image's geometry" in errors[0]


def test_new_label_layer_is_drawn_and_saved_with_the_study_header(widget, qtbot, tmp_path):
    sitk.WriteImage(make_image(geometry="oblique"), str(tmp_path / "ct.nrrd"))
    wait_for(qtbot, widget.open_path(tmp_path / "ct.nrrd"))
    labels = widget.new_label_layer()
    np.testing.assert_array_equal(labels.affine.affine_matrix, widget.viewer.layers[0].affine.affine_matrix)
    labels.data[2:4, 3:6, 4:8] = 3                 # what a brush stroke does to the data
    saved = labels.save(str(tmp_path / "drawn.nii.gz"), plugin="napari-medvision")
    assert saved == [str(tmp_path / "drawn.nii.gz")]
    written, source = sitk.ReadImage(saved[0]), sitk.ReadImage(str(tmp_path / "ct.nrrd"))
    np.testing.assert_allclose(written.GetDirection(), source.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(written.GetOrigin(), source.GetOrigin(), atol=1e-5)
    assert int(sitk.GetArrayFromImage(written).sum()) == 3 * 2 * 3 * 4


def test_viewer_open_uses_the_plugin_reader(make_napari_viewer, phantom_file):
    viewer = make_napari_viewer()
    path, case = phantom_file
    layers = viewer.open(str(path), plugin="napari-medvision")
    np.testing.assert_allclose(layers[0].affine.affine_matrix, case.image.napari_affine())


def test_demo_viewer_has_the_phantom_the_docks_and_the_demo_model(make_napari_viewer, monkeypatch, tmp_path):
    import napari

    from napari_medvision._qt import demo
    from napari_medvision.core.models import load_bundle
    from tests.bundles import unet_bundle

    # Two models, the demo's second, so choosing it is the demo's doing (shipped weights or not).
    models = [load_bundle(unet_bundle(tmp_path / name)) for name in ("another_model", demo.DEMO_MODEL)]
    monkeypatch.setattr("napari_medvision._qt.inference_widget.list_models", lambda: models)
    monkeypatch.setattr(napari, "Viewer", lambda **kwargs: make_napari_viewer())
    viewer = demo.open_demo_viewer(show=False)
    assert [layer.name for layer in viewer.layers] == ["CT phantom", "CT phantom labels"]
    assert any("Study" in name for name in viewer.window.dock_widgets)
    assert any("Fine-tune" in name for name in viewer.window.dock_widgets)
    runner = next(w for n, w in viewer.window.dock_widgets.items() if "Run model" in n)
    assert runner.image_combo.currentText() == "CT phantom"
    assert [b.name for b in runner.bundles] == ["another_model", demo.DEMO_MODEL]
    assert runner.selected_bundle().name == demo.DEMO_MODEL


def test_slider_range_reaches_the_whole_data(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-medvision", "ct_phantom")
    StudyWidget(viewer)
    image = viewer.layers["CT phantom"]
    assert tuple(image.contrast_limits) == (-125.0, 225.0)
    assert image.contrast_limits_range[0] <= image.data.min()
    assert image.contrast_limits_range[1] >= image.data.max()


def test_open_as_study_opens_an_xray_picture(widget, qtbot, tmp_path, monkeypatch):
    """The reader leaves PNG / JPEG / TIFF to napari; the dock's button opens them as studies."""
    from qtpy.QtWidgets import QFileDialog

    path = tmp_path / "chest xray.png"
    picture = sitk.GetImageFromArray(np.arange(20 * 30, dtype=np.uint8).reshape(20, 30))
    picture.SetSpacing((0.15, 0.15))
    sitk.WriteImage(picture, str(path))
    offered = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: offered.append(a[3]) or (str(path), ""))
    assert widget.open_file_button.text() == "Open as study…"
    widget.open_file_button.click()
    qtbot.waitUntil(lambda: len(widget.viewer.layers) == 1, timeout=60000)
    (layer,) = widget.viewer.layers
    assert layer.name == "chest xray.png" and layer.data.shape == (1, 20, 30)
    assert "spacing: 0.15, 0.15, 1 mm" in widget.geometry_label.text()
    for pattern in ("*.png", "*.jpg", "*.jpeg", "*.tif", "*.tiff", "*.nii.gz", "*.dcm"):
        assert pattern in offered[0]


def test_colour_picture_and_monochrome1_film_in_the_dock(widget, qtbot, tmp_path):
    """An RGB picture opens as an RGB layer that takes a label layer of its own grid; a MONOCHROME1
    radiograph shows inverted, and its file window is the 'From the file' preset."""
    from PIL import Image

    from napari_medvision.core.windowing import FILE_WINDOW
    from tests.core.test_radiograph_dicom import write_radiograph

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "c.png")
    wait_for(qtbot, widget.open_path(tmp_path / "c.png"))
    (picture,) = widget.viewer.layers
    assert picture.rgb and picture.data.shape == (1, 20, 30, 3)
    labels = widget.new_label_layer()
    assert labels.data.shape == (1, 20, 30)
    assert widget.value_at((0.0, 3.0, 4.0)) == pytest.approx(picture.data[0, 3, 4, :3].mean())

    film = write_radiograph(tmp_path / "cr.dcm", np.arange(600).reshape(20, 30) % 4000, modality="CR",
                            photometric="MONOCHROME1", pixel_spacing=(0.2, 0.2), window=(300.0, 250.0))
    wait_for(qtbot, widget.open_path(film))
    layer = widget.viewer.layers[-1]
    assert layer.colormap.name == "gray_r" and tuple(layer.contrast_limits) == (100.0, 400.0)
    layer.contrast_limits = (0.0, 50.0)
    widget.preset_combo.setCurrentText(FILE_WINDOW)
    assert tuple(layer.contrast_limits) == (100.0, 400.0)
