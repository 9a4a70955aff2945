import numpy as np
import pytest
import SimpleITK as sitk

from napari_medvision.core.errors import GeometryMismatchError
from napari_medvision.core.volume import (
    Volume,
    check_same_geometry,
    geometry_differences,
    geometry_from_napari_affine,
)
from tests.conftest import GEOMETRIES, make_image


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_napari_affine_maps_voxels_where_itk_puts_them(geometry):
    image = make_image(geometry=geometry)
    volume = Volume.from_sitk(image)
    affine = volume.napari_affine()
    for index_xyz in [(0, 0, 0), (10, 8, 5), (3, 7, 2)]:
        itk_world = np.array(image.TransformIndexToPhysicalPoint(index_xyz))
        napari_world = (affine @ np.array([*index_xyz[::-1], 1.0]))[:3]
        np.testing.assert_allclose(napari_world[::-1], itk_world, atol=1e-9)
        np.testing.assert_allclose(volume.index_to_world(index_xyz), itk_world, atol=1e-9)
        np.testing.assert_allclose(volume.world_to_index(itk_world), index_xyz, atol=1e-9)


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_affine_decomposes_back_to_itk_geometry(geometry):
    volume = Volume.from_sitk(make_image(geometry=geometry))
    spacing, origin, direction = geometry_from_napari_affine(volume.napari_affine())
    np.testing.assert_allclose(spacing, volume.spacing, atol=1e-12)
    np.testing.assert_allclose(origin, volume.origin, atol=1e-12)
    np.testing.assert_allclose(direction, volume.direction, atol=1e-12)


def test_sheared_affine_is_refused():
    affine = np.eye(4)
    affine[0, 1] = 0.5
    with pytest.raises(GeometryMismatchError, match="shear"):
        geometry_from_napari_affine(affine)


def test_to_sitk_round_trip_keeps_everything():
    image = make_image(geometry="oblique")
    back = Volume.from_sitk(image).to_sitk()
    assert back.GetSize() == image.GetSize()
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))


def test_two_d_image_becomes_one_slice():
    image = sitk.GetImageFromArray(np.arange(12, dtype=np.uint8).reshape(3, 4))
    image.SetSpacing((0.2, 0.3))
    volume = Volume.from_sitk(image)
    assert volume.shape == (1, 3, 4)
    assert volume.spacing[:2] == (0.2, 0.3)
    assert volume.metadata["dimension"] == 2


def test_geometry_differences_name_each_difference():
    a = Volume.from_sitk(make_image(geometry="anisotropic"))
    b = Volume.from_sitk(make_image(geometry="flipped_ras"))
    diffs = geometry_differences(a, b)
    assert diffs[1] == "origin first (-120.5, 33.25, 7) vs second (100, 80, -40) mm"
    assert [d.split()[0] for d in diffs] == ["spacing", "origin", "direction"]
    with pytest.raises(GeometryMismatchError, match="spacing .* origin .* direction"):
        check_same_geometry(a, b)
    check_same_geometry(a, a.with_array(np.zeros(a.shape, np.uint8)))


def test_a_2d_array_becomes_one_slice_and_other_shapes_are_refused():
    volume = Volume(np.zeros((3, 4), np.uint8), direction=np.eye(3, dtype=int))
    assert volume.shape == (1, 3, 4) and volume.size == (4, 3, 1)
    assert volume.direction.dtype == np.float64
    with pytest.raises(ValueError, match=r"needs a 3D \(z, y, x\) array, got shape \(2, 3, 4, 5\)"):
        Volume(np.zeros((2, 3, 4, 5)))


def test_with_array_keeps_the_grid_and_refuses_what_does_not_fit():
    volume = Volume(np.zeros((4, 5, 6)), (0.5, 0.6, 2.0), (1.0, 2.0, 3.0), metadata={"modality": "CT"},
                    warnings=["odd"])
    label = volume.with_array(np.ones((4, 5, 6), np.uint8), kind="label")
    assert label.geometry == volume.geometry and label.metadata == {"modality": "CT", "kind": "label"}
    assert label.warnings == [] and volume.warnings == ["odd"], "warnings belong to what was read"
    with pytest.raises(GeometryMismatchError, match=r"shape \(4, 5, 7\) does not fit a volume of shape \(4, 5, 6\)"):
        volume.with_array(np.zeros((4, 5, 7)))
    with pytest.raises(GeometryMismatchError):
        volume.with_array(np.zeros((5, 6)))          # a 2D array only fits a one-slice volume
    xray = Volume(np.zeros((1, 5, 6)))
    assert xray.with_array(np.zeros((5, 6))).shape == (1, 5, 6)
    with pytest.raises(GeometryMismatchError):
        xray.with_array(np.zeros((6, 5)))


def test_two_d_image_keeps_its_2d_direction_and_origin():
    image = sitk.GetImageFromArray(np.zeros((3, 4), np.uint8))
    image.SetSpacing((0.2, 0.3))
    image.SetOrigin((-5.0, 7.5))
    image.SetDirection((0.0, -1.0, 1.0, 0.0))
    volume = Volume.from_sitk(image)
    assert volume.spacing == (0.2, 0.3, 1.0) and volume.origin == (-5.0, 7.5, 0.0)
    np.testing.assert_array_equal(volume.direction, [[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match="expected a 2D or 3D image, got 4D"):
        Volume.from_sitk(sitk.Image([2, 2, 2, 2], sitk.sitkUInt8))


def test_an_affine_that_collapses_an_axis_is_refused():
    affine = Volume(np.zeros((2, 2, 2))).napari_affine()
    affine[:3, 0] = 0.0
    with pytest.raises(GeometryMismatchError, match="collapses an axis"):
        geometry_from_napari_affine(affine)


def test_float32_rounding_of_a_rotation_is_not_shear():
    """NIfTI stores axes as float32: the direction read back is orthonormal only to ~1e-7."""
    volume = Volume.from_sitk(make_image(geometry="oblique"))
    affine = volume.napari_affine().astype(np.float32).astype(np.float64)
    spacing, origin, direction = geometry_from_napari_affine(affine)
    np.testing.assert_allclose(direction, volume.direction, atol=1e-6)
    np.testing.assert_allclose(spacing, volume.spacing, atol=1e-5)


def test_geometry_tolerance_is_absolute_millimetres():
    base = Volume(np.zeros((2, 3, 4)), (0.7, 0.7, 5.0), (100.0, -250.0, 1000.0))
    nudged = lambda **kw: Volume(np.zeros((2, 3, 4)), **{"spacing": base.spacing, "origin": base.origin, **kw})  # noqa: E731
    assert geometry_differences(base, nudged(origin=(100.0 + 5e-7, -250.0, 1000.0))) == []
    assert geometry_differences(base, nudged(origin=(100.0, -250.0, 1000.0005))) == [
        "origin first (100, -250, 1000) vs second (100, -250, 1000) mm"], "0.5 µm at 1 m is no relative slack"
    assert geometry_differences(base, nudged(spacing=(0.7, 0.7, 5.00001))) != []


def test_every_difference_is_named_with_its_unit():
    a = Volume(np.zeros((2, 3, 4)), (1.0, 1.0, 2.0))
    b = Volume(np.zeros((2, 3, 5)), (1.0, 1.0, 3.0), direction=np.diag([-1.0, 1.0, 1.0]))
    assert geometry_differences(a, b, names=("image", "mask")) == [
        "size (x,y,z) image (4, 3, 2) vs mask (5, 3, 2)",
        "spacing image (1, 1, 2) vs mask (1, 1, 3) mm",
        "direction image (1, 0, 0, 0, 1, 0, 0, 0, 1) vs mask (-1, 0, 0, 0, 1, 0, 0, 0, 1)"]
    with pytest.raises(GeometryMismatchError) as refused:
        check_same_geometry(a, b)
    assert str(refused.value).startswith("the label map does not match the image's geometry: size (x,y,z) image "
                                         "(4, 3, 2) vs label map (5, 3, 2); spacing image")
    with pytest.raises(GeometryMismatchError, match="^the model output does not match .* vs model output"):
        check_same_geometry(a, b, "model output")
