"""Digitally reconstructed radiographs (DRRs) of the CT phantoms: synthetic chest X-rays.

A DRR here is a parallel-beam antero-posterior projection: each pixel is the line integral
of the linear attenuation along the patient's y axis (LPS: anterior to posterior),

    mu(HU) = MU_WATER * max(1 + HU / 1000, 0)  [1/mm],     P = sum(mu * dy)  [dimensionless],

shown as a 12-bit "for presentation" image (high attenuation bright: bone and soft tissue
white, lungs dark), rows running head to feet, columns along the patient's x (right to left,
as the viewer facing the patient sees an AP film). Pixel spacing is the CT's (x, z) spacing;
like a real projection it carries no patient position (origin 0, identity direction).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .phantom import Lesion, generate_phantom
from .volume import Volume

#: Linear attenuation of water at a typical diagnostic energy (~60 keV), per mm.
MU_WATER = 0.02
#: Line integral shown as full white (a 300 mm path of bone-free soft tissue is about 6).
FULL_SCALE = 8.0
#: Phantom grid for radiographs: the anatomy is in mm, so a coarser grid gives the same body faster.
#: 5 mm rows: thicker ones blur a nodule into one or two rows.
RADIOGRAPH_PHANTOM = {"shape": (64, 96, 96), "spacing": (3.7, 3.7, 5.0), "vary_slice_thickness": False,
                      "max_lesions": 2, "lesion_probability": 0.6, "lesion_diameter_mm": (16.0, 28.0)}


@dataclass
class RadiographCase:
    """A DRR, the phantom's lesions and which of them show (lung lesions: nodules)."""

    image: Volume
    lesions: list[Lesion] = field(default_factory=list)
    boxes_xy: list[tuple[float, float, float, float]] = field(default_factory=list)

    @property
    def nodules(self) -> list[Lesion]:
        """Lung lesions: what a chest film shows (a liver lesion barely changes the projection)."""
        return [lesion for lesion in self.lesions if lesion.organ == "lung"]

    @property
    def nodule_present(self) -> bool:
        return bool(self.nodules)


def project(ct: Volume, noise: float = 0.0, rng: np.random.Generator | None = None) -> Volume:
    """The AP DRR of a CT volume (HU, identity direction), as a 2D uint16 Volume ``(1, rows=z, cols=x)``.

    Args:
        ct: HU volume ``(z, y, x)``; its direction must be the identity (the phantom's default).
        noise: standard deviation of Gaussian noise added to the line integrals (quantum noise).
    """
    if not np.allclose(ct.direction, np.eye(3)):
        raise ValueError("project() needs an axis-aligned CT (identity direction)")
    mu = MU_WATER * np.clip(1.0 + ct.array.astype(np.float32) / 1000.0, 0.0, None)
    integral = mu.sum(axis=1) * ct.spacing[1]                      # (z, x)
    if noise > 0:
        integral = integral + (rng or np.random.default_rng(0)).normal(0.0, noise, integral.shape)
    pixels = np.clip(np.round(4095.0 * integral / FULL_SCALE), 0, 4095).astype(np.uint16)[::-1]   # head on top
    return Volume(pixels[np.newaxis], (ct.spacing[0], ct.spacing[2], 1.0),
                  metadata={"modality": "DX", "dimension": 2, "photometric": "MONOCHROME2",
                            "window": [4095.0, 2047.5]})


def generate_radiograph(seed: int = 0, **phantom) -> RadiographCase:
    """A DRR of phantom ``seed`` (settings: :data:`RADIOGRAPH_PHANTOM`, overridable), with its lesions'
    boxes in image pixels ``(x0, y0, x1, y1)``."""
    case = generate_phantom(seed, **{**RADIOGRAPH_PHANTOM, **phantom})
    rng = np.random.default_rng([seed, 7])
    image = project(case.image, noise=float(rng.uniform(0.01, 0.04)), rng=rng)
    rows = case.image.shape[0]
    boxes = []
    for lesion in case.lesions:
        low = case.image.world_to_index(np.array(lesion.box_world[:3]))
        high = case.image.world_to_index(np.array(lesion.box_world[3:]))
        boxes.append((float(low[0]), float(rows - 1 - high[2]), float(high[0]), float(rows - 1 - low[2])))
    return RadiographCase(image, list(case.lesions), boxes)
