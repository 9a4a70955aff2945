"""Opening a DICOM-SEG (or the series folder holding one) gives labels on the source series."""

import numpy as np

from napari_medvision._napari.reader import napari_get_reader
from napari_medvision.core.dicom.seg import Algorithm, write_dicom_seg
from napari_medvision.core.dicom.source import read_source_series
from tests.dicom_series import write_ct_series


def series_with_seg(folder):
    hu = np.full((5, 12, 14), -1000, np.int16)
    write_ct_series(folder, hu, direction=np.diag([-1.0, 1.0, 1.0]), file_names=[f"{n}.dcm" for n in "ecabd"])
    source = read_source_series(folder)
    label = np.zeros(source.volume.shape, np.uint8)
    label[1:3, 2:6, 3:9] = 4
    label[3, 8:11, 2:5] = 7
    write_dicom_seg(source.volume.with_array(label), source, folder / "seg.dcm", {4: "liver", 7: "tumour"},
                    colors={4: "#0000ff", 7: "#00ff00"}, algorithm=Algorithm("test", "1"))
    return source, label


def test_folder_with_seg_opens_image_and_labels_on_one_grid(tmp_path):
    source, label = series_with_seg(tmp_path / "ct")
    layers = napari_get_reader(str(tmp_path / "ct"))(str(tmp_path / "ct"))
    assert [kind for _, _, kind in layers] == ["image", "labels"]
    (image, image_kwargs, _), (labels, label_kwargs, _) = layers
    np.testing.assert_array_equal(label_kwargs["affine"], image_kwargs["affine"])
    np.testing.assert_array_equal(labels, np.select([label == 4, label == 7], [1, 2], 0))
    assert label_kwargs["features"]["name"] == ["background", "liver", "tumour"]
    assert np.allclose(label_kwargs["colormap"].color_dict[1], (0, 0, 1, 1), atol=0.02)
    assert label_kwargs["metadata"]["dicom_series_uid"] == source.series_uid


def test_seg_file_alone_gives_labels_at_the_series_position(tmp_path):
    source, label = series_with_seg(tmp_path / "ct")
    layers = napari_get_reader(str(tmp_path / "ct" / "seg.dcm"))(str(tmp_path / "ct" / "seg.dcm"))
    assert len(layers) == 1 and layers[0][2] == "labels"
    np.testing.assert_array_equal(layers[0][1]["affine"], source.volume.napari_affine())
    assert int(layers[0][0].max()) == 2


def test_rtstruct_file_opens_as_labels_with_names(tmp_path):
    from napari_medvision.core.dicom.rtstruct import write_rtstruct

    source, label = series_with_seg(tmp_path / "ct")
    write_rtstruct(source.volume.with_array(label), source, tmp_path / "ct" / "rt.dcm", {4: "liver", 7: "tumour"})
    [layer] = napari_get_reader(str(tmp_path / "ct" / "rt.dcm"))(str(tmp_path / "ct" / "rt.dcm"))
    assert layer[2] == "labels" and layer[1]["features"]["name"] == ["background", "liver", "tumour"]
    np.testing.assert_array_equal(layer[0], np.select([label == 4, label == 7], [1, 2], 0))
    layers = napari_get_reader(str(tmp_path / "ct"))(str(tmp_path / "ct"))
    assert [kind for _, _, kind in layers] == ["image", "labels", "labels"]


def test_labels_opened_from_a_seg_can_be_sent_again(tmp_path):
    """The layer remembers its series folder: an edited SEG goes back on the same series."""
    from types import SimpleNamespace

    from napari_medvision._napari.dicom_results import layer_source_folder

    series_with_seg(tmp_path / "ct")
    data, kwargs, _ = napari_get_reader(str(tmp_path / "ct" / "seg.dcm"))(str(tmp_path / "ct" / "seg.dcm"))[0]
    layer = SimpleNamespace(name="seg", data=data, metadata=kwargs["metadata"])
    assert layer_source_folder(layer) == tmp_path / "ct"
