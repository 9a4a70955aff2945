"""The shipped sample models: each loads from the registry, runs through `medvision infer` on a fresh
phantom, and meets its quality bar on seeds it never saw (small sets, so CI stays fast)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from napari_medvision.core.inference import classify, detect, segment
from napari_medvision.core.io import write_volume
from napari_medvision.core.metrics import dice_per_label, roc_auc
from napari_medvision.core.models import find_bundle
from napari_medvision.core.models.bundle import SAMPLE_MODELS_DIR
from napari_medvision.samples.common import drain
from napari_medvision.core.phantom import generate_phantom
from napari_medvision.samples import classifier, detector
from napari_medvision.samples.common import PHANTOM
from napari_medvision.samples.detector import froc_point

NEW_SEEDS = [424242, 515151, 606060, 717171]
RADIOGRAPH_AUC_BAR = 0.8


def sample(name):
    if not (SAMPLE_MODELS_DIR / name / "models").is_dir():
        pytest.skip(f"sample model {name} not present in {SAMPLE_MODELS_DIR}")
    return find_bundle(name)


@pytest.mark.parametrize("name", ["ct_organs_unet", "ct_organs_unetr", "lesion_classifier", "nodule_detector"])
def test_sample_runs_through_medvision_infer(tmp_path, name):
    bundle = sample(name)
    assert bundle.path.parent == SAMPLE_MODELS_DIR, "the registry finds the shipped sample"
    assert bundle.code_findings() == [], "the shipped samples pass the trust gate on their merits"
    image = write_volume(generate_phantom(NEW_SEEDS[0], **PHANTOM).image, tmp_path / "ct.nii.gz")
    out = tmp_path / ("seg.nii.gz" if bundle.task == "segmentation" else
                      "cam.nii.gz" if bundle.task == "classification" else "boxes.json")
    result = subprocess.run([sys.executable, "-m", "napari_medvision.cli", "infer", "--model", name, "--input",
                             str(image), "--output", str(out), "--device", "cpu", "--json"],
                            capture_output=True, text=True, encoding="utf-8", timeout=600)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["task"] == bundle.task
    assert out.exists()


# The transformer is shipped for comparison (its card gives its figures), so its bar is lower.
@pytest.mark.parametrize("name, bar", [("ct_organs_unet", 0.80), ("ct_organs_unetr", 0.6)])
def test_segmentation_dice_on_new_seeds(name, bar):
    """Mean over labels of each label's mean Dice over new-seed cases (the model card's measure)."""
    bundle = sample(name)
    per_case = []
    for seed in NEW_SEEDS + [828282, 939393]:
        case = generate_phantom(seed, **PHANTOM)
        result = drain(segment(bundle, case.image, device="cpu"))
        per_case.append(dice_per_label(result.labels.array, case.label.array, bundle.labels))
    per_label = {name: float(np.nanmean([c[name] for c in per_case])) for name in bundle.labels.values()}
    assert float(np.nanmean(list(per_label.values()))) >= bar, per_label


def test_classifier_auc_on_new_seeds():
    bundle = sample("lesion_classifier")
    scores, truth = [], []
    for seed in range(900_000, 900_060):   # 60 cases: with 16 (5 positives) the AUC swung 0.64..0.9
        case = generate_phantom(seed, **classifier.CLS_PHANTOM)
        result = drain(classify(bundle, case.image, device="cpu", explain=False))
        scores.append(result.probabilities["lesion"])
        truth.append(case.lesion_present)
    assert roc_auc(scores, truth) >= 0.85, list(zip(scores, truth))


def test_classifier_gradcam_is_hotter_at_the_lesions():
    """Grad-CAM must point at the lesions (MONAI's default post-processing flips it; we must not)."""
    bundle = sample("lesion_classifier")
    hotter = []
    for seed in range(910_000, 910_016):
        case = generate_phantom(seed, **{**classifier.CLS_PHANTOM, "lesion_probability": 1.0})
        result = drain(classify(bundle, case.image, device="cpu", explain=True))
        if not case.lesions or result.prediction != "lesion":   # the map explains the predicted class
            continue
        heat = result.heatmap.array
        near = np.zeros(heat.shape, bool)
        for lesion in case.lesions:
            low, high = np.array(lesion.box_world[:3]) - 10, np.array(lesion.box_world[3:]) + 10
            corners = np.array(np.meshgrid(*zip(low, high))).T.reshape(-1, 3)
            index = np.array([case.image.world_to_index(c) for c in corners])
            lo, hi = np.floor(index.min(0)).astype(int), np.ceil(index.max(0)).astype(int) + 1
            near[max(lo[2], 0):hi[2], max(lo[1], 0):hi[1], max(lo[0], 0):hi[0]] = True
        body = case.label.array > 0
        hotter.append(heat[near & body].mean() > np.median(heat[body]))
    assert len(hotter) >= 4 and np.mean(hotter) >= 0.6, hotter


def test_detector_sensitivity_at_one_false_positive_per_case():
    bundle = sample("nodule_detector")
    per_case = []
    for seed in range(800_000, 800_008):
        case = generate_phantom(seed, **detector.DET_PHANTOM)
        result = drain(detect(bundle, case.image, device="cpu", score_threshold=0.02))
        per_case.append(([(b.score, b.box_world) for b in result.boxes], case.lesions))
    # The measure: nodules (lung, >= 10 mm) at one false positive per case.
    assert froc_point(per_case, 1.0, detector.is_nodule) >= 0.70


def test_sample_models_are_small():
    assert SAMPLE_MODELS_DIR.is_dir(), "the sample bundles ship inside the package"
    total = sum(p.stat().st_size for p in SAMPLE_MODELS_DIR.rglob("*") if p.is_file())
    assert total < 40 * 1024 * 1024


def test_radiograph_classifier_runs_on_a_png_through_medvision_infer(tmp_path):
    """The 2D sample on a 16-bit PNG of a new film, as a user would give it a saved X-ray."""
    from PIL import Image

    from napari_medvision.core.radiograph_phantom import generate_radiograph

    bundle = sample("radiograph_classifier")
    assert bundle.code_findings() == [] and bundle.spatial_dims == 2
    film = generate_radiograph(NEW_SEEDS[1]).image.array[0]
    Image.fromarray(film).save(tmp_path / "chest.png")
    out = tmp_path / "cam.nii.gz"
    result = subprocess.run([sys.executable, "-m", "napari_medvision.cli", "infer", "--model", "radiograph_classifier",
                             "--input", str(tmp_path / "chest.png"), "--output", str(out), "--device", "cpu", "--json"],
                            capture_output=True, text=True, encoding="utf-8", timeout=600)
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)["probabilities"]) == {"no nodule", "nodule"}
    assert out.exists()


def test_radiograph_classifier_auc_and_gradcam_on_new_seeds():
    from napari_medvision.core.radiograph_phantom import generate_radiograph

    bundle = sample("radiograph_classifier")
    scores, truth, near = [], [], []
    for seed in range(920_000, 920_030):
        case = generate_radiograph(seed)
        result = drain(classify(bundle, case.image, device="cpu", explain=case.nodule_present))
        scores.append(result.probabilities["nodule"])
        truth.append(case.nodule_present)
        if case.nodule_present and result.prediction == "nodule":
            heat = result.heatmap.array[0]
            mask = np.zeros(heat.shape, bool)
            for lesion, (x0, y0, x1, y1) in zip(case.lesions, case.boxes_xy):
                if lesion.organ == "lung":
                    mask[max(int(y0) - 2, 0):int(y1) + 3, max(int(x0) - 3, 0):int(x1) + 4] = True
            near.append(heat[mask].mean() > np.median(heat))
    assert roc_auc(scores, truth) >= RADIOGRAPH_AUC_BAR, list(zip(scores, truth))
    assert len(near) >= 3 and np.mean(near) >= 0.6, near


def test_chest_radiograph_sample_data_is_2d_with_nodules():
    from napari_medvision._napari.sample_data import RADIOGRAPH_SEED, make_chest_radiograph
    from napari_medvision.core.radiograph_phantom import generate_radiograph

    (data, kwargs, kind), = make_chest_radiograph()
    assert kind == "image" and data.shape[0] == 1 and data.ndim == 3
    assert generate_radiograph(RADIOGRAPH_SEED).nodule_present
