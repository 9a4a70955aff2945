"""Where a library now does the job (SimpleITK components, MONAI AUC and box points, nibabel headers),
the behaviour that could silently change with it: thresholds at the edge, connectivity, ties,
oblique boxes, truncated NIfTI-2."""

import gzip
import itertools

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

from napari_medvision.core.errors import UnreadableFileError
from napari_medvision.core.inference.cleanup import remove_small_components
from napari_medvision.core.inference.detection import _boxes_to_lps
from napari_medvision.core.io.nifti_check import check_nifti_complete
from napari_medvision.core.metrics import roc_auc
from tests.conftest import rotation

SPACING = (0.5, 2.0, 3.0)   # 3 mm³ voxels


def test_small_components_are_measured_in_mm3_and_a_piece_at_the_limit_stays():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[0, 0, :4] = 1        # 4 voxels = 12 mm³: at the limit, kept
    labels[5, 5, :3] = 1        # 3 voxels = 9 mm³: removed
    labels[9, 0:4, 9] = 2       # 12 mm³ of another label: kept
    cleaned = remove_small_components(labels, 12.0, SPACING)
    assert cleaned[0, 0, :4].tolist() == [1] * 4
    assert not cleaned[5, 5].any()
    assert (cleaned == 2).sum() == 4
    assert not remove_small_components(labels, 12.1, SPACING)[0, 0].any()   # 12 mm³ < 12.1 mm³
    assert (remove_small_components(labels, 9.0, SPACING) == labels).all()   # every piece at 9 mm³ or more


def test_pieces_are_face_connected_and_each_label_on_its_own():
    labels = np.zeros((6, 6, 6), np.uint8)
    labels[1, 1, 1] = labels[2, 2, 2] = 1          # touching at a corner only: two pieces of 1 voxel
    labels[4, 4, 3] = 1
    labels[4, 4, 4] = 2                            # a face neighbour, but of another label
    cleaned = remove_small_components(labels, 2 * 3.0, SPACING)   # keep pieces of 2 voxels or more
    assert not cleaned.any()


def test_roc_auc_counts_ties_half_and_needs_both_classes():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(200), 1)        # many ties
    truth = rng.random(200) < 0.4
    positives, negatives = scores[truth], scores[~truth]
    mann_whitney = ((positives[:, None] > negatives).sum() + 0.5 * (positives[:, None] == negatives).sum()) / (
        len(positives) * len(negatives))
    assert roc_auc(scores, truth) == pytest.approx(mann_whitney, abs=1e-12)
    assert np.isnan(roc_auc([0.1, 0.9], [1, 1])) and np.isnan(roc_auc([0.1, 0.9], [0, 0]))


def test_boxes_go_to_world_through_all_eight_corners_on_an_oblique_grid():
    affine = np.eye(4)
    affine[:3, :3] = rotation(0.3, -0.2, 0.5) @ np.diag([1.5, 2.0, 4.0])
    affine[:3, 3] = [10.0, -20.0, 5.0]
    boxes = np.array([[2.0, 3.0, 1.0, 9.0, 7.0, 4.0], [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]])
    world = np.array(_boxes_to_lps(boxes, affine))
    for box, got in zip(boxes, world):
        corners = np.array(list(itertools.product(*zip(box[:3] - 0.5, box[3:] - 0.5))))
        lps = ((affine[:3, :3] @ corners.T).T + affine[:3, 3]) * [-1.0, -1.0, 1.0]
        np.testing.assert_allclose(got, [*lps.min(axis=0), *lps.max(axis=0)], atol=1e-9)
    assert _boxes_to_lps(np.zeros((0, 6)), affine) == []


@pytest.mark.parametrize("gz", [False, True], ids=["nii", "nii.gz"])
def test_truncated_nifti2_is_caught(tmp_path, gz):
    path = tmp_path / ("ct.nii.gz" if gz else "ct.nii")
    nibabel.save(nibabel.Nifti2Image(np.zeros((5, 6, 7), np.float32), np.eye(4)), path)
    check_nifti_complete(path)
    data = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    path.write_bytes(gzip.compress(data[:-10]) if gz else data[:-10])
    with pytest.raises(UnreadableFileError, match="promises 1384 bytes, the file holds 1374"):
        check_nifti_complete(path)


def test_a_gzip_ending_inside_the_header_is_truncated_and_other_files_are_left_to_itk(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16))
    full = tmp_path / "full.nii.gz"
    sitk.WriteImage(image, str(full))
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(full.read_bytes()[:40])
    with pytest.raises(UnreadableFileError, match="compressed data ends early"):
        check_nifti_complete(cut)
    other = tmp_path / "notes.nii.gz"
    other.write_bytes(gzip.compress(b"hello" * 100))
    check_nifti_complete(other)   # not NIfTI: ITK reports it in its own words
