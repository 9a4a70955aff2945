"""The interactive sample's training scans: phantoms and the real scans it may read.

* CT and MR phantoms from seeds of the recipe, with their liver, kidneys and lesions as targets
  (the spleen never is: it stays an organ the model was not trained on);
* the real scans of :data:`TRAIN_SCANS` when ``real_data`` holds them (the brain1 MR tumour, the
  prostate scan's labels 1-8), read at train time and skipped when absent. brain2, breast1 and the
  prostate's label 9 are never read: they are the held-out real structures.

Examples are drawn from them by :mod:`napari_medvision.core.interactive.examples`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.interactive.examples import Source, make_source

#: Real scans read for training (file stem -> label values used as targets).
TRAIN_SCANS = {"brain1": (1,), "prostate_phantom_subvolume": (1, 2, 3, 4, 5, 6, 7, 8)}
#: Phantom organs used as targets (the spleen is left out on purpose).
PHANTOM_TARGETS = ("liver", "kidney", "lesion")


def phantom_sources(seeds) -> list[Source]:
    """CT and MR phantoms (alternating) from ``seeds``."""
    from ..core.phantom import LABELS, generate_phantom

    sources = []
    for number, seed in enumerate(seeds):
        modality = "CT" if number % 2 == 0 else "MR"
        case = generate_phantom(int(seed), modality=modality, lesion_probability=1.0)
        values = [LABELS[name] for name in PHANTOM_TARGETS]
        sources.append(make_source(f"phantom {modality} {seed}", case.image.array,
                                   np.asarray(case.image.spacing, float)[::-1], case.label.array, values))
    return sources


def real_sources(folder: Path | None) -> list[Source]:
    """The :data:`TRAIN_SCANS` found in ``folder`` (none when it is absent)."""
    from ..core.io import read_volume

    sources = []
    for stem, values in TRAIN_SCANS.items():
        if folder is None:
            break
        image_path = folder / f"{stem}_image.nrrd"
        label_path = folder / f"{stem}_label.nrrd"
        if not image_path.exists():
            image_path, label_path = folder / f"{stem}.nrrd", folder / f"{stem}-label.nrrd"
        if not (image_path.exists() and label_path.exists()):
            continue
        image, label = read_volume(image_path), read_volume(label_path)
        sources.append(make_source(stem, image.array, np.asarray(image.spacing, float)[::-1], label.array, values))
    return sources
