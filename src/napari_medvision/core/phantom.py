"""A synthetic CT (or MR-like) torso phantom with organ labels and lesions.

The phantom is built in world millimetres, so the anatomy keeps its real size
whatever the voxel spacing (anisotropic spacing included). Every random choice
comes from one ``numpy.random.Generator`` seeded by the caller: the same seed
gives the same case, voxel for voxel.

Labels: see :data:`LABELS`. Intensities are Hounsfield units for CT (int16) and
arbitrary T1-like units for MR.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .volume import Volume

#: Label values of the phantom's label map, as written to ``dataset.json``.
LABELS = {
    "background": 0,
    "body": 1,
    "lung": 2,
    "liver": 3,
    "spleen": 4,
    "kidney": 5,
    "bone": 6,
    "lesion": 7,
}

# Mean intensity of each tissue: CT in HU (portal-venous contrast phase, so organs stand out
# from muscle as in a routine chest/abdomen CT), MR in T1-like units.
_TISSUE_CT = {"air": -1000, "fat": -100, "muscle": 50, "lung": -850, "liver": 110, "spleen": 125,
              "kidney": 170, "marrow": 300, "cortex": 900}
_TISSUE_MR = {"air": 0, "fat": 900, "muscle": 320, "lung": 40, "liver": 520, "spleen": 380,
              "kidney": 430, "marrow": 650, "cortex": 60}


@dataclass
class Lesion:
    """A round lesion: centre and box in world LPS mm, diameter in mm, host organ."""

    center_world: tuple[float, float, float]
    diameter_mm: float
    organ: str
    box_world: tuple[float, float, float, float, float, float]

    def to_dict(self) -> dict:
        return {"center_world": list(self.center_world), "diameter_mm": self.diameter_mm,
                "organ": self.organ, "box_world": list(self.box_world)}


@dataclass
class PhantomCase:
    """One generated case: image, label map (same grid) and its lesions."""

    image: Volume
    label: Volume
    lesions: list[Lesion] = field(default_factory=list)

    @property
    def lesion_present(self) -> bool:
        return bool(self.lesions)


def generate_phantom(
    seed: int = 0,
    shape: tuple[int, int, int] = (64, 128, 128),
    spacing: tuple[float, float, float] = (2.8, 2.8, 5.0),
    *,
    modality: str = "CT",
    max_lesions: int = 4,
    lesion_probability: float = 0.7,
    lesion_diameter_mm: tuple[float, float] = (6.0, 24.0),
    vary_slice_thickness: bool = False,
    direction: np.ndarray | None = None,
) -> PhantomCase:
    """Generate one torso phantom.

    Args:
        seed: random seed; the same seed gives the same case.
        shape: array shape ``(z, y, x)``.
        spacing: voxel size ``(x, y, z)`` in mm (anisotropic allowed).
        modality: ``"CT"`` (HU, int16) or ``"MR"`` (T1-like, with a bias field).
        max_lesions: most lesions in one case.
        lesion_probability: chance that a case has any lesion at all.
        lesion_diameter_mm: range of lesion diameters.
        vary_slice_thickness: draw the z spacing within ±30% of ``spacing[2]``.
        direction: 3x3 direction matrix (default identity).

    Returns:
        A :class:`PhantomCase` whose image and label share one geometry centred
        on the world origin.
    """
    if modality not in ("CT", "MR"):
        raise ValueError(f"modality must be 'CT' or 'MR', not {modality!r}")
    rng = np.random.default_rng(seed)
    spacing = np.asarray(spacing, dtype=float)
    if vary_slice_thickness:
        spacing[2] *= rng.uniform(0.7, 1.3)
    direction = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    size_xyz = np.asarray(shape[::-1])
    origin = -direction @ (spacing * (size_xyz - 1) / 2)
    grid = Volume(np.zeros(shape, np.uint8), tuple(spacing), tuple(origin), direction)

    x, y, z = _world_grid(shape, spacing)
    tissue, label = _anatomy(rng, x, y, z, float(z.max()))
    lesions = _add_lesions(rng, grid, x, y, z, label, tissue, max_lesions, lesion_probability,
                           lesion_diameter_mm)
    image = _render(rng, tissue, label, x, y, modality, spacing)
    meta = {"modality": modality, "phantom_seed": seed}
    return PhantomCase(grid.with_array(image, **meta), grid.with_array(label.astype(np.uint8), **meta), lesions)


def _world_grid(shape, spacing):
    """Per-axis world coordinates (mm, centred), broadcastable to ``shape`` (z, y, x)."""
    nz, ny, nx = shape
    x = ((np.arange(nx) - (nx - 1) / 2) * spacing[0])[None, None, :]
    y = ((np.arange(ny) - (ny - 1) / 2) * spacing[1])[None, :, None]
    z = ((np.arange(nz) - (nz - 1) / 2) * spacing[2])[:, None, None]
    return x, y, z


def _ellipsoid(x, y, z, center, radii):
    return ((x - center[0]) / radii[0]) ** 2 + ((y - center[1]) / radii[1]) ** 2 + ((z - center[2]) / radii[2]) ** 2 <= 1


def _anatomy(rng, x, y, z, z_half):
    """Tissue names per voxel (object array of small ints) and the label map."""
    shape = np.broadcast_shapes(x.shape, y.shape, z.shape)
    a, b = rng.uniform(140, 175), rng.uniform(95, 125)           # body half-width / half-depth, mm
    cx, cy = rng.uniform(-15, 15), rng.uniform(-10, 10)
    diaphragm = rng.uniform(-0.15, 0.2) * z_half                   # z of the lung bases, mm
    radial = np.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2)    # 1 on the skin
    body = np.broadcast_to(radial <= 1, shape)

    tissue = np.full(shape, "air", dtype=object)
    label = np.zeros(shape, np.uint8)
    tissue[body] = "muscle"
    label[body] = LABELS["body"]
    fat_depth = rng.uniform(0.06, 0.14)
    tissue[np.broadcast_to((radial > 1 - fat_depth) & (radial <= 1), shape)] = "fat"

    def organ(name, tissue_name, mask):
        mask = mask & body
        tissue[mask] = tissue_name
        label[mask] = LABELS[name]

    liver_c = (cx - 0.42 * a, cy - 0.05 * b, diaphragm - 0.28 * z_half)
    organ("liver", "liver", _ellipsoid(x, y, z, liver_c, (0.45 * a * rng.uniform(0.85, 1.1), 0.62 * b,
                                                          0.32 * z_half * rng.uniform(0.8, 1.1))))
    organ("spleen", "spleen", _ellipsoid(x, y, z, (cx + 0.55 * a, cy + 0.3 * b, diaphragm - 0.2 * z_half),
                                         (0.17 * a, 0.26 * b * rng.uniform(0.8, 1.2), 0.15 * z_half)))
    for side in (-1, 1):
        organ("kidney", "kidney", _ellipsoid(x, y, z, (cx + side * 0.36 * a, cy + 0.45 * b,
                                                       diaphragm - 0.6 * z_half),
                                             (0.11 * a, 0.17 * b, 0.16 * z_half * rng.uniform(0.85, 1.15))))
    lung_height = z_half - diaphragm
    for side in (-1, 1):
        lung = _ellipsoid(x, y, z, (cx + side * 0.46 * a, cy + 0.02 * b, diaphragm + 0.65 * lung_height),
                          (0.36 * a * rng.uniform(0.9, 1.1), 0.68 * b, 0.72 * lung_height))
        organ("lung", "lung", lung & (z > diaphragm) & (radial < 0.86))

    spine_c = (cx, cy + 0.62 * b)
    spine_r = np.sqrt((x - spine_c[0]) ** 2 + (y - spine_c[1]) ** 2)
    vertebra = spine_r <= 0.17 * b
    rib_band = (radial > 0.84) & (radial < 0.9) & (y > cy - 0.7 * b) & (z > diaphragm - 0.35 * z_half)
    # Ribs wind around the chest: arcs in each axial slice, a stack of bars in a coronal one.
    angle = np.arctan2(y - cy, x - cx)
    ribs = rib_band & (np.sin(2 * np.pi * z / rng.uniform(22, 30) + 3 * np.abs(angle)) > 0.5)
    organ("bone", "marrow", np.broadcast_to(vertebra | ribs, shape))
    organ("bone", "cortex", np.broadcast_to((vertebra & (spine_r > 0.13 * b)) | ribs, shape))
    return tissue, label


def _add_lesions(rng, grid, x, y, z, label, tissue, max_lesions, probability, diameter_range):
    """Paint round lesions inside lung or liver; returns their world boxes."""
    if max_lesions <= 0 or rng.random() >= probability:
        return []
    lesions = []
    spacing = np.asarray(grid.spacing)
    for _ in range(int(rng.integers(1, max_lesions + 1))):
        organ_name = "lung" if rng.random() < 0.6 else "liver"
        diameter = float(rng.uniform(*diameter_range))
        inside = ndimage.distance_transform_edt(label == LABELS[organ_name], sampling=spacing[::-1])
        candidates = np.argwhere(inside > diameter / 2 + 1.0)
        if len(candidates) == 0:
            continue
        k, j, i = candidates[rng.integers(len(candidates))]
        center = np.array([x[0, 0, i], y[0, j, 0], z[k, 0, 0]])
        mask = _ellipsoid(x, y, z, center, (diameter / 2,) * 3)
        label[mask] = LABELS["lesion"]
        tissue[mask] = f"lesion_{organ_name}"
        world_center = grid.index_to_world(np.array([i, j, k], dtype=float))
        corners = grid.index_to_world(np.array([i, j, k]) + np.array([[-1], [1]]) * (diameter / 2 / spacing))
        low, high = corners.min(axis=0), corners.max(axis=0)
        lesions.append(Lesion(tuple(map(float, world_center)), diameter, organ_name,
                              tuple(map(float, (*low, *high)))))
    return lesions


def _render(rng, tissue, label, x, y, modality, spacing):
    """Intensities from the tissue map: contrast jitter, partial-volume blur and noise."""
    table = dict(_TISSUE_CT if modality == "CT" else _TISSUE_MR)
    jitter = 12.0 if modality == "CT" else 60.0
    for name in ("liver", "spleen", "kidney", "muscle"):
        table[name] += rng.uniform(-jitter, jitter)
    if modality == "CT":
        table["lesion_lung"] = rng.uniform(-10, 60)
        table["lesion_liver"] = table["liver"] - rng.uniform(40, 80)
    else:
        table["lesion_lung"] = rng.uniform(250, 400)
        table["lesion_liver"] = table["liver"] - rng.uniform(150, 250)
    image = np.zeros(tissue.shape, np.float32)
    for name, value in table.items():
        image[tissue == name] = value
    # Intra-abdominal fat: smooth random blobs in soft tissue below the lungs.
    blobs = ndimage.gaussian_filter(rng.standard_normal(tissue.shape).astype(np.float32), 3.0)
    fatty = (tissue == "muscle") & (blobs > np.quantile(blobs, 0.8)) & (label == LABELS["body"])
    image[fatty] = table["fat"]
    sigma_vox = 0.8 / np.maximum(spacing[::-1] / spacing.min(), 1.0)
    image = ndimage.gaussian_filter(image, sigma_vox)
    if modality == "MR":
        bias = 1 + 0.25 * (x / np.abs(x).max()) - 0.15 * (y / np.abs(y).max())
        image = image * bias
        noise = rng.uniform(10, 30)
        image = np.abs(image + rng.normal(0, noise, image.shape))
        return image.astype(np.int16)
    image += rng.normal(0, rng.uniform(8, 25), image.shape)
    return np.clip(np.round(image), -1024, 3071).astype(np.int16)


def write_phantom_dataset(
    out_dir, cases: int = 4, seed: int = 0, *, progress=None, **phantom_options
) -> "CaseStore":
    """Write ``cases`` phantoms in the case-store layout, plus ``annotations.json``.

    ``annotations.json`` holds, per case, its seed, whether a lesion is present and
    each lesion's world box (LPS mm), for classification and detection.

    Args:
        out_dir: the store's folder (created).
        cases: how many cases.
        seed: master seed; case ``i`` uses a seed derived from ``(seed, i)``.
        progress: optional callable ``progress(done, total)``.
        phantom_options: passed on to :func:`generate_phantom`.
    """
    from pathlib import Path

    from ._atomic import write_json_atomic
    from .training.case_store import CaseStore

    modality = phantom_options.get("modality", "CT")
    store = CaseStore.create(out_dir, LABELS, channel=modality, name="medvision_phantom",
                             generator="napari_medvision.core.phantom", seed=seed)
    annotations = {"seed": seed, "cases": {}}
    for index in range(cases):
        case_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
        case = generate_phantom(case_seed, **phantom_options)
        case_id = f"phantom_{index:03d}"
        store.add_case(case_id, case.image, case.label)
        annotations["cases"][case_id] = {
            "seed": case_seed,
            "lesion_present": case.lesion_present,
            "lesions": [lesion.to_dict() for lesion in case.lesions],
        }
        write_json_atomic(Path(out_dir) / "annotations.json", annotations)
        if progress is not None:
            progress(index + 1, cases)
    return store


def shift_appearance(case: PhantomCase, scale: float = 0.55, offset: float = 180.0) -> PhantomCase:
    """The same anatomy with another contrast (as from another scanner or protocol).

    HU are mapped to ``scale * HU + offset``: soft tissue brightens, lung and air come up
    towards soft tissue. Used to test that fine-tuning adapts a model to a new appearance.
    """
    shifted = np.clip(np.round(case.image.array.astype(np.float32) * scale + offset), -1024, 3071)
    return PhantomCase(case.image.with_array(shifted.astype(np.int16), appearance="shifted"), case.label,
                       case.lesions)
