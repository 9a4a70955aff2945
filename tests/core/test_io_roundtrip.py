"""Read -> napari layer -> write a label layer back -> re-read with SimpleITK: nothing moves."""

import numpy as np
import pytest
import SimpleITK as sitk

from napari_medvision._napari.layers import image_layer_data, labels_layer_data
from napari_medvision._napari.writer import write_image, write_labels
from napari_medvision.core.io import read_volume, write_volume
from tests.conftest import GEOMETRIES, make_image

FORMATS = [".nii.gz", ".nii", ".nrrd", ".mha"]


def assert_same_header(actual: sitk.Image, expected: sitk.Image, tol=1e-6):
    assert actual.GetSize() == expected.GetSize()
    np.testing.assert_allclose(actual.GetSpacing(), expected.GetSpacing(), atol=tol, rtol=0)
    np.testing.assert_allclose(actual.GetOrigin(), expected.GetOrigin(), atol=tol, rtol=0)
    np.testing.assert_allclose(actual.GetDirection(), expected.GetDirection(), atol=tol, rtol=0)


def layer_meta(layer_kwargs: dict) -> dict:
    """What napari hands a writer: the layer state (affine, metadata, ...)."""
    return {"metadata": layer_kwargs["metadata"], "affine": layer_kwargs["affine"],
            "scale": [1, 1, 1], "translate": [0, 0, 0]}


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
@pytest.mark.parametrize("source_format", FORMATS)
@pytest.mark.parametrize("out_format", [".nii.gz", ".nrrd", ".mha"])
def test_label_layer_writes_back_with_source_geometry(tmp_path, geometry, source_format, out_format):
    source = tmp_path / f"source{source_format}"
    sitk.WriteImage(make_image(geometry=geometry), str(source))
    expected = sitk.ReadImage(str(source))

    volume = read_volume(source)
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(expected))
    _, image_kwargs, _ = image_layer_data(volume, "ct")
    labels = (volume.array > 200).astype(np.int32) + (volume.array > 900)
    data, kwargs, kind = labels_layer_data(volume.with_array(labels), "seg")
    assert kind == "labels"
    np.testing.assert_array_equal(kwargs["affine"], image_kwargs["affine"])

    out = tmp_path / f"labels{out_format}"
    assert write_labels(str(out), data, layer_meta(kwargs)) == [str(out)]
    written = sitk.ReadImage(str(out))
    # NIfTI stores origin and axes as float32: from a NRRD/MetaImage source (doubles) it can only
    # come within float32 resolution (1.5e-6 mm at 100 mm); between like formats it is exact.
    cross_to_nifti = out_format == ".nii.gz" and not source_format.startswith(".nii")
    assert_same_header(written, expected, tol=1e-5 if cross_to_nifti else 1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), labels)


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_layer_without_recorded_geometry_uses_its_affine(tmp_path, geometry):
    source = tmp_path / "source.nrrd"
    sitk.WriteImage(make_image(geometry=geometry), str(source))
    volume = read_volume(source)
    labels = np.ones(volume.shape, np.uint8)
    out = tmp_path / "drawn.mha"
    write_labels(str(out), labels, {"affine": volume.napari_affine(), "metadata": {}})
    assert_same_header(sitk.ReadImage(str(out)), sitk.ReadImage(str(source)))


@pytest.mark.parametrize("out_format", [".nii.gz", ".nrrd", ".mha"])
def test_image_layer_round_trip_keeps_values_and_dtype(tmp_path, out_format):
    source = tmp_path / "ct.nii.gz"
    sitk.WriteImage(make_image(geometry="flipped_ras"), str(source))
    data, kwargs, _ = image_layer_data(read_volume(source))
    out = tmp_path / f"copy{out_format}"
    write_image(str(out), data, layer_meta(kwargs))
    written, expected = sitk.ReadImage(str(out)), sitk.ReadImage(str(source))
    assert_same_header(written, expected)
    assert written.GetPixelID() == expected.GetPixelID()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(expected))


def test_png_xray_is_a_one_slice_volume_and_writes_back(tmp_path):
    array = (np.arange(40 * 30) % 256).astype(np.uint8).reshape(40, 30)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.15, 0.15))
    sitk.WriteImage(image, str(tmp_path / "chest xray.png"))
    volume = read_volume(tmp_path / "chest xray.png")
    assert volume.shape == (1, 40, 30)
    np.testing.assert_array_equal(volume.array[0], array)
    data, kwargs, _ = labels_layer_data(volume.with_array((volume.array > 100).astype(np.uint8)))
    write_labels(str(tmp_path / "mask.nii.gz"), data, layer_meta(kwargs))
    written = sitk.ReadImage(str(tmp_path / "mask.nii.gz"))
    assert written.GetDimension() == 2 and written.GetSize() == (30, 40)   # 2D like the study
    assert np.allclose(written.GetSpacing(), (0.15, 0.15))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), array > 100)


def test_rgb_png_keeps_its_colours_and_measures_in_grey(tmp_path):
    rgb = np.zeros((5, 6, 3), np.uint8)
    rgb[..., 0] = 200
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "rgb.png"))
    volume = read_volume(tmp_path / "rgb.png")
    assert volume.shape == (1, 5, 6)
    np.testing.assert_allclose(volume.array, 0.299 * 200, rtol=1e-5)
    np.testing.assert_array_equal(volume.channels[0], rgb)   # models get the colours themselves


@pytest.mark.parametrize("name", ["label with spaces.nii.gz", "étiquette_ß_肝臓.nrrd", "ü ñ.mha"])
def test_names_with_spaces_and_non_ascii(tmp_path, name):
    folder = tmp_path / "Ordner mit Ümlauten"
    folder.mkdir()
    volume = read_volume(_write(make_image(geometry="oblique"), folder / "source image.nii.gz"))
    path = write_volume(volume, folder / name)
    assert path.exists()
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.direction, volume.direction, atol=1e-6)


def test_labels_are_stored_in_the_smallest_integer_type(tmp_path):
    volume = read_volume(_write(make_image(), tmp_path / "ct.mha"))
    write_volume(volume.with_array(np.full(volume.shape, 7, np.int64)), tmp_path / "l.nrrd", labels=True)
    assert sitk.ReadImage(str(tmp_path / "l.nrrd")).GetPixelID() == sitk.sitkUInt8


def _write(image, path):
    sitk.WriteImage(image, str(path))
    return path
