"""Axial, coronal and sagittal views (Study dock, "MPR"): orientation letters against the study's
direction matrix, one linked point, the same data in every view."""

from types import SimpleNamespace

import numpy as np
import pytest
from napari.layers import Layer

from napari_medvision._napari.layers import image_layer_data, labels_layer_data, layer_volume
from napari_medvision._qt.mpr import LETTER_PREFIX
from napari_medvision._qt.study_widget import StudyWidget
from napari_medvision.core.phantom import generate_phantom
from tests.conftest import rotation

pytestmark = pytest.mark.gui

DIRECTIONS = {"identity": np.eye(3), "flipped": np.diag([-1.0, -1.0, 1.0]), "oblique": rotation(0.3, -0.2, 0.5)}
LPS_PLUS, LPS_MINUS = ("L", "P", "S"), ("R", "A", "I")


OPEN = []


@pytest.fixture(autouse=True)
def _close_views(make_napari_viewer):
    """MPR off before napari's fixture checks that no canvas outlived its viewer."""
    yield
    while OPEN:
        OPEN.pop().mpr_check.setChecked(False)


def open_views(viewer, image_layer):
    viewer.add_layer(image_layer)
    study = StudyWidget(viewer)
    viewer.window.add_dock_widget(study, name="Study")
    study.mpr_check.setChecked(True)
    OPEN.append(study)
    return study, study.mpr


def phantom_viewer(make_napari_viewer, direction):
    viewer = make_napari_viewer(show=True)
    case = generate_phantom(3, shape=(16, 32, 32), spacing=(6.0, 6.0, 10.0), direction=direction)
    viewer.add_layer(Layer.create(*labels_layer_data(case.label, "labels")))
    study, views = open_views(viewer, Layer.create(*image_layer_data(case.image, "ct")))
    return viewer, study, views


def canvases(viewer, views):
    return {"axial": viewer.window._qt_viewer.canvas,
            **{name: qt.canvas for name, qt in views.canvases.items()}}


def letter(lps_step) -> str:
    """The patient direction a step (x, y, z LPS mm) goes most along."""
    axis = int(np.argmax(np.abs(lps_step)))
    return (LPS_PLUS if lps_step[axis] > 0 else LPS_MINUS)[axis]


def expected_letters(canvas, layer, volume) -> dict[str, str]:
    """Letters from screen pixels -> world (napari's camera) -> voxel index (the layer) -> LPS through
    the study's own spacing, origin and direction matrix."""
    width, height = canvas.native.width(), canvas.native.height()

    def lps(x, y):
        world = canvas._map_canvas2world((x, y), canvas.view)
        index_zyx = np.asarray(layer.world_to_data(world), dtype=float)
        return volume.index_to_world(index_zyx[::-1])

    left, right = lps(width * 0.25, height / 2), lps(width * 0.75, height / 2)
    top, bottom = lps(width / 2, height * 0.25), lps(width / 2, height * 0.75)
    return {"middle_right": letter(right - left), "middle_left": letter(left - right),
            "bottom_center": letter(bottom - top), "top_center": letter(top - bottom)}


def shown_letters(model) -> dict[str, str]:
    return {str(key)[len(LETTER_PREFIX):]: overlay.text for key, overlay in model.canvas.overlays.items()
            if str(key).startswith(LETTER_PREFIX) and overlay.visible}


@pytest.mark.parametrize("name", DIRECTIONS)
def test_orientation_letters_follow_the_direction_matrix(make_napari_viewer, qtbot, name):
    viewer, _, views = phantom_viewer(make_napari_viewer, DIRECTIONS[name])
    qtbot.wait(50)
    image = viewer.layers["ct"]
    volume = layer_volume(image)
    shown = {view: shown_letters(model) for view, model in views.all_models().items()}
    for view, canvas in canvases(viewer, views).items():
        assert shown[view] == expected_letters(canvas, image, volume), view
    # The radiological convention itself, whatever the file's axes:
    assert shown["axial"] == {"middle_left": "R", "middle_right": "L", "top_center": "A", "bottom_center": "P"}
    assert shown["coronal"]["top_center"] == "S" and shown["coronal"]["middle_left"] == "R"
    assert shown["sagittal"]["top_center"] == "S" and shown["sagittal"]["middle_left"] == "A"


def test_real_flipped_mr_letters(make_napari_viewer, qtbot, shared_data):
    viewer = make_napari_viewer(show=True)
    (layer,) = viewer.open(str(shared_data / "pyradiomics" / "brain1_image.nrrd"), plugin="napari-medvision")
    viewer.layers.remove(layer)
    _, views = open_views(viewer, layer)
    qtbot.wait(50)
    volume = layer_volume(layer)
    assert volume.direction[1, 1] < 0, "this scan's y axis is flipped"
    for view, canvas in canvases(viewer, views).items():
        assert shown_letters(views.all_models()[view]) == expected_letters(canvas, layer, volume), view


def test_one_point_drives_all_views_and_clicks_move_it(make_napari_viewer, qtbot):
    viewer, study, views = phantom_viewer(make_napari_viewer, np.eye(3))
    views.move_to((12.0, -20.0, 30.0))
    points = [np.asarray(model.dims.point) for model in views.all_models().values()]
    for point in points[1:]:
        np.testing.assert_allclose(point, points[0])
    cross = views._crosses["coronal"]
    np.testing.assert_allclose(cross.data[[0, 2], 0, 1], points[0][1])   # the z and x lines pass through y
    np.testing.assert_allclose(cross.data[[0, 1], 0, 2], points[0][2])   # the z and y lines pass through x

    # A click in the sagittal view (shows z, y) at z = -40, y = 15 moves the axial and coronal slices.
    sagittal = views.models["sagittal"]
    event = SimpleNamespace(button=1, type="mouse_press", position=(-40.0, 15.0, points[0][2]))
    clicking = views._click_to_move(sagittal, event)
    next(clicking)
    event.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(clicking)
    for model in views.all_models().values():
        assert abs(model.dims.point[0] - -40.0) <= 5.0 and abs(model.dims.point[1] - 15.0) <= 3.0
    assert abs(viewer.dims.point[2] - points[0][2]) <= 3.0, "the sagittal slice itself stays"
    assert "HU" in study.describe_point(viewer.dims.point)


def test_views_draw_the_same_data_and_share_window_and_edits(make_napari_viewer, qtbot):
    viewer, study, views = phantom_viewer(make_napari_viewer, np.eye(3))
    image, labels = viewer.layers["ct"], viewer.layers["labels"]
    for view in ("coronal", "sagittal"):
        assert views.mirrors(image)[view].data is image.data
        assert views.mirrors(labels)[view].data is labels.data
    image.contrast_limits = (-1000.0, 400.0)
    labels.opacity = 0.25
    for view in ("coronal", "sagittal"):
        assert tuple(views.mirrors(image)[view].contrast_limits) == (-1000.0, 400.0)
        assert views.mirrors(labels)[view].opacity == 0.25

    redrawn = []
    labels.events.set_data.connect(lambda event: redrawn.append(event))
    coronal = views.mirrors(labels)["coronal"]
    index = tuple(np.round(labels.world_to_data(viewer.dims.point)).astype(int))
    coronal.paint(index, 6, refresh=True)                      # a brush stroke in the coronal view
    assert labels.data[index] == 6 and redrawn, "the axial view shows the stroke"

    result = viewer.add_layer(Layer.create(*labels_layer_data(layer_volume(labels), "model result")))
    assert all(views.mirrors(result)[view].data is result.data for view in ("coronal", "sagittal"))
    assert result.name in views.models["sagittal"].layers
    viewer.layers.remove(result)
    assert result.name not in views.models["sagittal"].layers

    views.models["coronal"].cursor.position = tuple(viewer.dims.point)   # the mouse over the coronal view
    assert study.cursor_label.text().startswith("HU ") and " mm (LPS)" in study.cursor_label.text()

    study.mpr_check.setChecked(False)
    assert study.mpr is None and [layer.name for layer in viewer.layers] == ["labels", "ct"]
    assert not any(str(key).startswith(LETTER_PREFIX) for key in viewer.canvas.overlays)
