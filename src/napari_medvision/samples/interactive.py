"""The interactive sample (``interactive_unet``): a click-conditioned 3D U-Net, its training and card.

``medvision train interactive_unet --output DIR [--real-data ../shared/data/pyradiomics]`` regenerates
the bundle: examples from :mod:`.interactive_data` (random structures in phantoms and in the real
scans, plus labelled structures), clicks from the benchmark's simulated user
(:mod:`napari_medvision.core.interactive.simulate`: first click at the innermost voxel, then at the
innermost voxel of the largest error) over several rounds with the network's own predictions, MONAI
``DiceCELoss``. Then the held-out evaluation: NoC on the real structures never read in training and on
phantom spleens (an organ never a target) of unseen seeds, written into the model card.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Generator

import numpy as np
import torch

from ..core._atomic import write_json_atomic
from ..core.interactive.cube import CUBE_VOXELS
from ..core.interactive.examples import MAX_ROUNDS
from .common import HELD_OUT_SEED, case_seeds, package_version, torch_version, write_bundle

log = logging.getLogger(__name__)

NAME = "interactive_unet"
NETWORK = {"_target_": "UNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 1,
           "channels": [16, 32, 64, 128], "strides": [2, 2, 2], "num_res_units": 0, "norm": "instance"}
#: Real structures held out of training (evaluated on): file stem -> label value.
HELD_OUT_REAL = {"brain2": 1, "breast1": 1, "prostate_phantom_subvolume": 9}


def bundle_config() -> tuple[dict, dict]:
    """``(inference.json, metadata.json)`` of the interactive sample."""
    inference = {"bundle_root": ".", "network_def": NETWORK}
    n = CUBE_VOXELS
    metadata = {
        "version": "1.0.0",
        "name": NAME,
        "task": "Interactive 3D segmentation from clicks (any structure, CT or MR)",
        "description": "Click-conditioned 3D U-Net (MONAI UNet) on a 48^3 isotropic cube around the clicks: "
                       "image channels plus positive and negative Gaussian guidance (DeepEdit definition)",
        "authors": "napari-medvision",
        "intended_use": "Annotation aid for research, not for diagnosis",
        "monai_version": package_version("monai"),
        "pytorch_version": torch_version(),
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "magnitude", "modality": "CT or MR", "num_channels": 4,
                                 "spatial_shape": [n, n, n], "dtype": "float32", "value_range": [-4, 4],
                                 "is_patch_data": True,
                                 "channel_def": {"0": "image, robust z-score in the cube",
                                                 "1": "image, centred on the first positive click",
                                                 "2": "positive guidance", "3": "negative guidance"}}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 1,
                                 "spatial_shape": [n, n, n], "dtype": "float32", "value_range": [0, 1],
                                 "is_patch_data": True, "channel_def": {"0": "structure (logit)"}}},
        },
        "medvision": {"task": "interactive", "engine": NAME},
    }
    return inference, metadata


def train_interactive_sample(output: str | Path, *, cases: int = 8, seed: int = 0, epochs: int = 400,
                             steps_per_epoch: int = 50, batch: int = 2, max_minutes: float = 90.0,
                             device: str = "auto", real_data: Path | None = None,
                             threads: int = 2, evaluate: bool = True) -> Generator[object, None, dict]:
    """Train the interactive sample into the bundle folder ``output``; yields progress strings.

    Args:
        cases: phantoms (CT and MR alternating) to draw examples from.
        epochs, steps_per_epoch: most optimiser steps is their product (``max_minutes`` may stop it sooner).
        real_data: folder of the PyRadiomics scans (``../shared/data/pyradiomics``); skipped when absent.

    Returns:
        The metrics dict that is also written to the model card.
    """
    from monai.bundle import ConfigParser
    from monai.losses import DiceCELoss
    from monai.utils import set_determinism

    from ..core.interactive.examples import training_batch

    from .interactive_data import phantom_sources, real_sources

    output = Path(output)
    torch.set_num_threads(threads)
    set_determinism(seed)
    rng = np.random.default_rng(seed)
    inference, metadata = bundle_config()
    network = ConfigParser({"n": inference["network_def"]}).get_parsed_content("n")
    seeds = case_seeds(seed, cases)
    yield f"making {cases} phantoms"
    sources = phantom_sources(seeds)
    real = real_sources(Path(real_data) if real_data else None)
    sources += real
    yield f"sources: {', '.join(s.name for s in sources)}"
    # Half the examples from the real scans when there are any: they are the harder, truer case.
    weights = np.array([0.5 / max(len(sources) - len(real), 1)] * (len(sources) - len(real))
                       + [0.5 / len(real)] * len(real)) if real else None
    weights = weights / weights.sum() if weights is not None else None
    optimiser = torch.optim.AdamW(network.parameters(), lr=2e-3, weight_decay=1e-4)
    loss_function = DiceCELoss(sigmoid=True)
    total_steps, start, history, running = epochs * steps_per_epoch, time.monotonic(), [], []
    step = 0
    for step in range(1, total_steps + 1):
        minutes = (time.monotonic() - start) / 60
        if minutes > max_minutes:
            break
        if minutes > 0.75 * max_minutes or step > 0.75 * total_steps:
            for group in optimiser.param_groups:
                group["lr"] = 5e-4
        inputs, targets = training_batch(network, sources, weights, rng, batch)
        optimiser.zero_grad()
        loss = loss_function(network(inputs), targets)
        loss.backward()
        optimiser.step()
        running.append(float(loss.detach()))
        if step % steps_per_epoch == 0:
            history.append(round(float(np.mean(running)), 4))
            running = []
            write_bundle(output, inference, metadata, network)
            yield f"step {step}/{total_steps}: loss {history[-1]:.4f} ({minutes:.1f} min)"
    write_bundle(output, inference, metadata, network)
    training = {"seed": seed, "phantom_seeds": [int(s) for s in seeds], "real_scans": [s.name for s in real],
                "steps": step, "batch": batch, "minutes": round((time.monotonic() - start) / 60, 1),
                "loss_per_epoch": history}
    metrics = {"training": training}
    if evaluate:
        yield "evaluating on held-out structures"
        metrics["held_out"] = held_out_report(output, Path(real_data) if real_data else None, seed)
    write_json_atomic(output / "docs" / "metrics.json", metrics)
    (output / "docs" / "README.md").write_text(model_card(metadata, metrics), encoding="utf-8")
    return metrics


def held_out_structures(real_data: Path | None, seed: int):
    """``(group, name, image, spacing_xyz, truth)``: the held-out real structures and phantom spleens."""
    from scipy import ndimage

    from ..core.io import read_volume
    from ..core.phantom import LABELS, generate_phantom

    for stem, value in HELD_OUT_REAL.items():
        if real_data is None:
            break
        image_path = real_data / f"{stem}_image.nrrd"
        label_path = real_data / f"{stem}_label.nrrd"
        if not image_path.exists():
            image_path, label_path = real_data / f"{stem}.nrrd", real_data / f"{stem}-label.nrrd"
        if image_path.exists() and label_path.exists():
            image, label = read_volume(image_path), read_volume(label_path)
            pieces, count = ndimage.label(label.array == value)
            if count:
                truth = pieces == 1 + int(np.argmax(np.bincount(pieces.ravel())[1:]))
                yield "real (held out)", f"{stem} label {value}", image.array, image.spacing, truth
    for number, case_seed in enumerate(held_out_seeds(seed)):
        modality = "CT" if number % 2 == 0 else "MR"
        case = generate_phantom(int(case_seed), modality=modality)
        truth = case.label.array == LABELS["spleen"]
        if truth.sum() >= 20:
            yield f"phantom {modality} spleen", f"{modality} {case_seed}", case.image.array, case.image.spacing, truth


def held_out_report(bundle_path: Path, real_data: Path | None, seed: int, max_clicks: int = 10) -> dict:
    """NoC@85/NoC@90 and Dice after 1 and 3 clicks of the simulated user, per held-out structure.

    Returns:
        ``{"seeds": the held-out phantom seeds, "structures": one row per structure}``.
    """
    from ..core.interactive.click_unet import ClickUNetEngine
    from ..core.interactive.simulate import clicks_to_reach, simulate_session

    engine = ClickUNetEngine(bundle_path)
    rows = []
    for group, name, image, spacing, truth in held_out_structures(real_data, seed):
        dices, seconds = simulate_session(engine, image, spacing, truth, max_clicks=max_clicks, stop_dice=0.9)
        padded = dices + [dices[-1]] * 3
        rows.append({"group": group, "structure": name, "noc85": clicks_to_reach(dices, 0.85, max_clicks),
                     "noc90": clicks_to_reach(dices, 0.90, max_clicks), "dice1": round(dices[0], 4),
                     "dice3": round(padded[2], 4), "seconds_per_click": round(float(np.mean(seconds)), 3)})
    return {"seeds": held_out_seeds(seed), "structures": rows}


def held_out_seeds(seed: int) -> list[int]:
    """Seeds of the held-out phantoms (the recipe's seed plus :data:`HELD_OUT_SEED`)."""
    return case_seeds(seed + HELD_OUT_SEED, 4)


def model_card(metadata: dict, metrics: dict) -> str:
    training = metrics["training"]
    rows = "\n".join(f"| {r['group']} | {r['structure']} | {r['noc85']} | {r['noc90']} | {r['dice1']:.3f} | "
                     f"{r['dice3']:.3f} | {r['seconds_per_click']:.2f} |"
                     for r in metrics.get("held_out", {}).get("structures", []))
    return f"""# {NAME}

{metadata['description']}.

**Intended use:** an annotation aid for research, not for diagnosis: click inside a structure (+),
correct with more clicks (+ where it is missed, - where it leaks).

## Input and output
The engine (`napari_medvision.core.interactive.click_unet`) takes a cube, equal in mm along each
axis, around the clicks (first a crop estimated from the clicks, then re-framed around the first
answer), resamples it to {CUBE_VOXELS}^3 voxels and gives the network four channels: the cube's
intensities z-scored robustly (1st-99th percentile), the same centred on the first positive click,
and the positive and negative clicks as Gaussian guidance (sigma 1.5 voxels, scaled to 0..1, as
`monai.apps.deepedit`'s `AddGuidanceSignalDeepEditd` builds them). One logit channel; the
probability goes back onto the scan's own grid (linear), over 0.5, only the pieces holding a
positive click kept. Any 3D CT or MR image; 2D images use the model-free engine.

## Training
{training['steps']} AdamW steps of batch {training['batch']} ({training['minutes']} min on a shared 2-core CPU),
MONAI `DiceCELoss`, seed {training['seed']}. Examples: random smooth blobs (random rotation, size 4-45 mm
radius, deformed by low-frequency noise, random contrast to the surroundings, texture, sometimes a core,
a partial-volume edge) inserted into {len(training['phantom_seeds'])} CT and MR phantoms and into the real
scans {', '.join(training['real_scans']) or '(none found)'}; plus their labelled structures (phantom liver,
kidneys and lesions, never the spleen; the brain1 tumour; prostate scan labels 1-8). Clicks from the
benchmark's simulated user over 0-{MAX_ROUNDS} rounds with the network's own predictions.
Regenerate with `medvision train {NAME} --output DIR --real-data ../shared/data/pyradiomics`.

## Held-out results
Structures never seen in training: the real brain2 (MR brain tumour, another patient than brain1),
breast1 (MR breast tumour, a kind of scan not trained on), the prostate scan's label 9 (its image was
a training background, this label never a target), and spleens (an organ never a target) of phantoms
from unseen seeds. Simulated user, at most 10 clicks, stopping at Dice 0.90.

| group | structure | NoC@85 | NoC@90 | Dice@1 | Dice@3 | s/click |
|---|---|---|---|---|---|---|
{rows}
"""
