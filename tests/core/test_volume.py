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
