"""The PyRadiomics scans in ../shared/data: real headers, flipped axes, 6.5 mm slices."""

import numpy as np
import pytest
import SimpleITK as sitk

from napari_medvision._napari.layers import labels_layer_data
from napari_medvision._napari.reader import read_study
from napari_medvision._napari.writer import write_labels
from napari_medvision.core.io import read_label_for, read_volume

PAIRS = [("brain1_image.nrrd", "brain1_label.nrrd"), ("brain2_image.nrrd", "brain2_label.nrrd"),
         ("breast1_image.nrrd", "breast1_label.nrrd"),
         ("prostate_phantom_subvolume.nrrd", "prostate_phantom_subvolume-label.nrrd")]


@pytest.mark.parametrize("image_name, label_name", PAIRS)
def test_tumour_label_overlays_its_image(shared_data, image_name, label_name):
    folder = shared_data / "pyradiomics"
    (_, image_kwargs, image_kind), = read_study(str(folder / image_name))
    (label_data, label_kwargs, label_kind), = read_study(str(folder / label_name))
    assert (image_kind, label_kind) == ("image", "labels")
    np.testing.assert_allclose(label_kwargs["affine"], image_kwargs["affine"], atol=1e-9)
    itk = sitk.ReadImage(str(folder / label_name))
    some_voxel = np.argwhere(label_data > 0)[0]
    world = (label_kwargs["affine"] @ [*some_voxel, 1.0])[:3][::-1]
    np.testing.assert_allclose(world, itk.TransformIndexToPhysicalPoint([int(v) for v in some_voxel[::-1]]),
                               atol=1e-6)


@pytest.mark.parametrize("image_name, label_name", PAIRS)
@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_label_writes_back_with_the_image_header(shared_data, tmp_path, image_name, label_name, suffix):
    folder = shared_data / "pyradiomics"
    image = read_volume(folder / image_name)
    label = read_label_for(image, folder / label_name)
    data, kwargs, _ = labels_layer_data(label, "tumour")
    out = tmp_path / f"tumour{suffix}"
    write_labels(str(out), data, {"metadata": kwargs["metadata"], "affine": kwargs["affine"]})
    written, source = sitk.ReadImage(str(out)), sitk.ReadImage(str(folder / image_name))
    tol = 1e-6 if suffix != ".nii.gz" else 1e-5  # NIfTI keeps float32 origins (see test_io_roundtrip)
    assert written.GetSize() == source.GetSize()
    for get in ("GetSpacing", "GetOrigin", "GetDirection"):
        np.testing.assert_allclose(getattr(written, get)(), getattr(source, get)(), atol=tol, rtol=0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written),
                                  sitk.GetArrayFromImage(sitk.ReadImage(str(folder / label_name))))


def test_brain_is_flipped_in_y_and_displays_at_world_position(shared_data):
    volume = read_volume(shared_data / "pyradiomics" / "brain1_image.nrrd")
    assert volume.direction[1, 1] == -1
    affine = volume.napari_affine()
    assert affine[1, 1] < 0, "napari's y axis runs the other way, as in the header"
