"""Sample-data contributions: a CT phantom, an MR-like study (flipped, anisotropic) and a chest radiograph."""

from __future__ import annotations

import numpy as np

from ..core.phantom import LABELS, generate_phantom
from .layers import image_layer_data, labels_layer_data

_NAMES = {v: k for k, v in LABELS.items() if v}


def make_ct_phantom() -> list[tuple]:
    """Synthetic chest/abdomen CT in HU (seed 0) with its organ and lesion labels."""
    case = generate_phantom(seed=0, max_lesions=5, lesion_probability=1.0)
    return [image_layer_data(case.image, "CT phantom"),
            labels_layer_data(case.label, "CT phantom labels", _NAMES, opacity=0.4, visible=False)]


def make_mr_phantom() -> list[tuple]:
    """T1-like MR phantom: 1.4 x 1.4 x 4 mm voxels and a flipped y axis (as many MR headers have)."""
    flip_y = np.diag([1.0, -1.0, 1.0])
    case = generate_phantom(seed=1, shape=(40, 160, 160), spacing=(1.9, 1.9, 7.0), modality="MR",
                            direction=flip_y, lesion_probability=1.0)
    return [image_layer_data(case.image, "MR phantom"),
            labels_layer_data(case.label, "MR phantom labels", _NAMES, opacity=0.4, visible=False)]


#: Phantom seed of the sample radiograph: its CT holds a 24 mm nodule in the upper lung (the shipped
#: radiograph_classifier calls it: p = 0.97; the 21 mm nodule of seed 1 it scores 0.37).
RADIOGRAPH_SEED = 14


def make_chest_radiograph() -> list[tuple]:
    """A synthetic chest X-ray (DRR of a CT phantom with lung nodules), 2D, for the 2D sample model."""
    from ..core.radiograph_phantom import generate_radiograph

    case = generate_radiograph(RADIOGRAPH_SEED)
    return [image_layer_data(case.image, "chest radiograph")]
