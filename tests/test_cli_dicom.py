"""``medvision dicom-seg`` as the issue writes it, run as a real subprocess."""

import highdicom as hd
import numpy as np
import pydicom
import SimpleITK as sitk

from napari_medvision.core.io import read_volume, write_volume
from tests.core.test_dicom_seg import dciodvfy_errors
from tests.dicom_series import write_ct_series
from tests.test_cli import medvision


def series_and_label(tmp_path):
    write_ct_series(tmp_path / "ct", np.full((4, 10, 12), -1000, np.int16), spacing=(0.8, 0.8, 3.0))
    volume = read_volume(tmp_path / "ct")
    label = np.zeros(volume.shape, np.uint8)
    label[1:3, 2:6, 2:7] = 4  # "spleen" in ct_organs_unet
    write_volume(volume.with_array(label), tmp_path / "label.nii.gz", labels=True)
    return volume


def test_dicom_seg_with_model_names_and_geometry_error(tmp_path):
    volume = series_and_label(tmp_path)
    run = medvision("dicom-seg", "--label", tmp_path / "label.nii.gz", "--reference", tmp_path / "ct",
                    "--output", tmp_path / "out.dcm", "--model", "ct_organs_unet")
    assert run.returncode == 0, run.stderr
    seg = hd.seg.segread(tmp_path / "out.dcm")
    spleen = seg.get_segment_description(1)
    assert spleen.segment_label == "spleen" and spleen.algorithm_type.value == "AUTOMATIC"
    assert dciodvfy_errors(tmp_path / "out.dcm") == []
    # The same label map with 2.5 mm slices no longer fits the series: one error line, nothing written.
    image = sitk.ReadImage(str(tmp_path / "label.nii.gz"))
    image.SetSpacing((0.8, 0.8, 2.5))
    sitk.WriteImage(image, str(tmp_path / "moved.nii.gz"))
    run = medvision("dicom-seg", "--label", tmp_path / "moved.nii.gz", "--reference", tmp_path / "ct",
                    "--output", tmp_path / "bad.dcm")
    assert run.returncode == 2
    assert run.stderr.startswith("error: ") and run.stderr.count("\n") == 1 and "spacing" in run.stderr
    assert not (tmp_path / "bad.dcm").exists()
    assert volume.shape == (4, 10, 12)


def test_dicom_seg_writes_rtstruct_by_output_name(tmp_path):
    series_and_label(tmp_path)
    run = medvision("dicom-seg", "--label", tmp_path / "label.nii.gz", "--reference", tmp_path / "ct",
                    "--output", tmp_path / "out.rtstruct.dcm", "--edited", "--model", "ct_organs_unet")
    assert run.returncode == 0, run.stderr
    ds = pydicom.dcmread(tmp_path / "out.rtstruct.dcm")
    assert ds.Modality == "RTSTRUCT" and ds.StructureSetROISequence[0].ROIName == "spleen"
    assert ds.StructureSetROISequence[0].ROIGenerationAlgorithm == "MANUAL"
    assert dciodvfy_errors(tmp_path / "out.rtstruct.dcm") == []


def test_infer_dcm_output_needs_a_dicom_series_input(tmp_path, capsys):
    from napari_medvision.cli import main

    volume = series_and_label(tmp_path)
    write_volume(volume, tmp_path / "ct.nii.gz")
    code = main(["infer", "--model", "ct_organs_unet", "--input", str(tmp_path / "ct.nii.gz"),
                 "--output", str(tmp_path / "out.dcm")])
    err = capsys.readouterr().err
    assert code == 2 and "DICOM series folder" in err and err.count("\n") == 1
    assert not (tmp_path / "out.dcm").exists()
