"""Fine-tuning the click-conditioned network on a case store: simulated clicks on the corrected masks.

``medvision finetune --model interactive_unet --cases STORE --output NEW`` (and the Fine-tune dock)
reach this through :func:`napari_medvision.core.training.finetune.finetune` when the bundle's task is
``interactive``. Every connected piece of every label of a case is a structure; each training example
is a cube around one (or a random structure inserted into the case's scan, so the model keeps working
on things the store does not hold), with the simulated user's clicks over several rounds, as the
sample was trained (:mod:`.examples`). Validation: the Dice after three simulated clicks on fixed
examples of the validation cases, before and after; the new version keeps the parent's weights when
no epoch beat it.
"""

from __future__ import annotations

import time
from typing import Generator

import numpy as np

from ..errors import MedvisionError

#: Validation examples per validation case (fixed by the settings' seed).
VALIDATION_EXAMPLES = 4
#: Share of examples whose target is a structure of the store (the rest: random structures).
STORE_SHARE = 0.8


def finetune_interactive(bundle, store, versions, settings, split, *, output=None,
                         group=None) -> Generator[object, None, dict]:
    """Fine-tune the interactive ``bundle`` on ``store``; yields set-up text and ``TrainStep`` items.

    Args:
        split: ``(case ids, chosen validation ids) -> (training ids, validation ids)``, as for any model.
        output: the new version's folder (checked by the caller), or None for the next ``vNNN``.

    Returns:
        the fields of a :class:`~napari_medvision.core.training.finetune.FinetuneResult`.

    Raises:
        MedvisionError: several processes (not supported for this model), no cases.
    """
    import torch
    from monai.losses import DiceCELoss

    from ..training.trainer import TrainStep
    from .click_unet import load_network
    from .examples import training_batch

    start = time.perf_counter()
    if group is not None:
        raise MedvisionError("the interactive model fine-tunes in one process: leave out --nproc/--hosts")
    cases = _checked_cases(store)
    train_ids, val_ids = split(cases, settings.validation_cases)
    sources = {}
    for number, case_id in enumerate(cases):
        sources[case_id] = _case_source(store, case_id)
        yield f"preparing case {number + 1}/{len(cases)}"
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    network = load_network(bundle.path)
    validation = _validation_set([sources[c] for c in val_ids], settings.seed)
    base_dice = _validate(network, validation, settings.seed)
    yield f"base model validation Dice after 3 clicks {base_dice:.4f}"
    train_sources = [sources[c] for c in train_ids if sources[c].structures]
    if not train_sources:
        raise MedvisionError("no training case holds a labelled structure of 30 voxels or more: correct a case first")
    optimiser = torch.optim.AdamW(network.parameters(), lr=settings.learning_rate)
    loss_function = DiceCELoss(sigmoid=True)
    best = (base_dice, 0, {k: v.clone() for k, v in network.state_dict().items()})
    history, stopped_by = [], "epochs"
    for epoch in range(1, settings.epochs + 1):
        network.train()
        losses = []
        for step in range(1, settings.steps_per_epoch + 1):
            inputs, targets = training_batch(network, train_sources, None, rng, settings.batch_size, STORE_SHARE)
            optimiser.zero_grad()
            loss = loss_function(network(inputs), targets)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            yield TrainStep(epoch, settings.epochs, step, settings.steps_per_epoch, float(np.mean(losses)))
        network.eval()
        val_dice = _validate(network, validation, settings.seed)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_dice": val_dice})
        yield TrainStep(epoch, settings.epochs, settings.steps_per_epoch, settings.steps_per_epoch,
                        float(np.mean(losses)), val_dice)
        if val_dice > best[0]:
            best = (val_dice, epoch, {k: v.clone() for k, v in network.state_dict().items()})
        if (time.perf_counter() - start) / 60 > settings.max_minutes:
            stopped_by = "time"
            break
    improved = best[1] > 0
    record = {"cases": train_ids, "validation_cases": val_ids, "base_validation_dice": round(base_dice, 4),
              "validation": "Dice after 3 simulated clicks", "best_epoch": best[1],
              "best_validation_dice": round(best[0], 4), "improved": improved, "history": history,
              "seconds": round(time.perf_counter() - start, 1)}
    version = versions.write(bundle, best[2], record, output)
    return {"version": version, "base_dice": base_dice, "best_dice": best[0], "best_epoch": best[1],
            "history": history, "seconds": time.perf_counter() - start, "training_cases": train_ids,
            "validation_cases": val_ids, "stopped_by": stopped_by}


def _checked_cases(store) -> list[str]:
    cases = store.check().case_ids()
    if not cases:
        raise MedvisionError(f"the case store '{store.root}' has no complete cases yet: add a corrected case first")
    for case_id in cases:
        store.check_geometry(case_id)
    return cases


def _case_source(store, case_id: str):
    """A case as an example :class:`~.examples.Source`: every label value's pieces are structures."""
    from .examples import make_source

    image, label = store.read_case(case_id)
    values = [int(v) for v in np.unique(label.array) if v > 0]
    return make_source(case_id, image.array, np.asarray(image.spacing, float)[::-1], label.array, values)


def _validation_set(sources, seed: int) -> list:
    """Fixed ``(cube intensities, cube truth)`` examples of the validation cases' structures."""
    from .examples import example

    rng = np.random.default_rng(seed + 1)
    examples = []
    for source in sources:
        for _ in range(VALIDATION_EXAMPLES if source.structures else 0):
            drawn = example(source, rng, structure_chance=1.0)
            if drawn is not None and drawn[1].sum() >= 8:
                examples.append(drawn)
    return examples


def _validate(network, examples, seed: int) -> float:
    """Mean Dice after three simulated clicks (first, then two corrections) on the cube examples."""
    import torch

    from ..metrics import dice
    from .cube import network_input
    from .examples import clicks_for

    rng = np.random.default_rng(seed + 2)
    scores = []
    network.eval()
    for block, truth in examples:
        positive, negative = clicks_for(network, block, truth, rng, rounds=2)
        with torch.no_grad():
            logits = network(torch.from_numpy(network_input(block, positive, negative))[None])[0, 0].numpy()
        scores.append(dice(logits > 0, truth))
    return float(np.mean(scores)) if scores else float("nan")
