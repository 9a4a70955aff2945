"""Fine-tuning the click-conditioned network on a case store: simulated clicks on the corrected masks.

``medvision finetune --model interactive_unet --cases STORE --output NEW`` (and the Fine-tune dock)
reach this through :func:`napari_medvision.core.training.finetune.finetune` when the bundle's task is
``interactive``. Every connected piece of every label of a case is a structure; each training example
is a cube around one (or a random structure inserted into the case's scan, so the model keeps working
on things the store does not hold), with the simulated user's clicks over several rounds, as the
sample was trained (:mod:`.examples`). Validation: the Dice after three simulated clicks on fixed
examples of the validation cases, before and after; the new version keeps the parent's weights when
no epoch beat it.

Corrections count as in the segmentation fine-tune (``correction_weight``): voxels of the case
store's edit masks (where the user changed the model's output) weigh ``1 + correction_weight`` in the
loss's cross-entropy, and a structure holding edited voxels is the target that many times as often.
With ``correction_weight`` 0 the loss is MONAI's ``DiceCELoss`` and the draws those of the sample's recipe.
``device``: ``auto`` (CUDA, else Apple MPS, else CPU), ``cpu`` or ``cuda``; mixed precision on CUDA.
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


def finetune_interactive(bundle, store, versions, settings, split, *, output=None, group=None,
                         device: str = "auto") -> Generator[object, None, dict]:
    """Fine-tune the interactive ``bundle`` on ``store``; yields set-up text and ``TrainStep`` items.

    A cancel (the generator closed) writes nothing, or the best epoch so far when
    ``settings.keep_best_on_cancel`` and some epoch beat the parent.

    Args:
        split: ``(case ids, chosen validation ids) -> (training ids, validation ids)``, as for any model.
        output: the new version's folder (checked by the caller), or None for the next ``vNNN``.
        device: ``auto``, ``cpu``, ``cuda`` (or ``mps``), as :func:`~napari_medvision.core.models.choose_device`.

    Returns:
        the fields of a :class:`~napari_medvision.core.training.finetune.FinetuneResult`.

    Raises:
        MedvisionError: several processes (not supported for this model), no cases.
    """
    import torch

    from ..inference.windows import autocast
    from ..models import choose_device
    from ..training.trainer import TrainStep
    from .click_unet import load_network
    from .examples import edited_batch

    start = time.perf_counter()
    if group is not None:
        raise MedvisionError("the interactive model fine-tunes in one process: leave out --nproc/--hosts")
    torch_device = choose_device(device)
    cases = _checked_cases(store)
    train_ids, val_ids = split(cases, settings.validation_cases)
    sources = {}
    for number, case_id in enumerate(cases):
        sources[case_id] = _case_source(store, case_id, settings.correction_weight)
        yield f"preparing case {number + 1}/{len(cases)}"
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    network = load_network(bundle.path).to(torch_device)
    validation = _validation_set([sources[c] for c in val_ids], settings.seed)
    if not validation:   # no Dice to judge an epoch by: the parent would come back unchanged, silently
        raise MedvisionError(f"the validation case(s) {', '.join(val_ids)} hold no labelled structure of 30 "
                             "voxels or more: correct one of them, or add a corrected case")
    base_dice = _validate(network, validation, settings.seed)
    yield f"base model validation Dice after 3 clicks {base_dice:.4f}"
    train_sources = [sources[c] for c in train_ids if sources[c].structures]
    if not train_sources:
        raise MedvisionError("no training case holds a labelled structure of 30 voxels or more: correct a case first")
    optimiser = torch.optim.AdamW(network.parameters(), lr=settings.learning_rate)
    scaler = torch.amp.GradScaler("cuda", enabled=torch_device.type == "cuda")
    loss_function = CorrectionWeightedLoss(settings.correction_weight)
    best = (base_dice, 0, _cpu_state(network))
    history, stopped_by = [], "epochs"
    record = {"cases": train_ids, "validation_cases": val_ids, "base_validation_dice": round(base_dice, 4),
              "validation": "Dice after 3 simulated clicks", "correction_weight": settings.correction_weight,
              "device": torch_device.type}
    try:
        for epoch in range(1, settings.epochs + 1):
            network.train()
            losses = []
            for step in range(1, settings.steps_per_epoch + 1):
                inputs, targets, edited = (t.to(torch_device) for t in edited_batch(
                    network, train_sources, None, rng, settings.batch_size, STORE_SHARE))
                optimiser.zero_grad()
                with autocast(torch_device, True):
                    loss = loss_function(network(inputs), targets, edited)
                scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
                losses.append(float(loss.detach()))
                yield TrainStep(epoch, settings.epochs, step, settings.steps_per_epoch, float(np.mean(losses)))
                if (time.perf_counter() - start) / 60 > settings.max_minutes:   # as the segmentation trainer
                    stopped_by = "time"
                    break
            network.eval()
            val_dice = _validate(network, validation, settings.seed)
            history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_dice": val_dice})
            if val_dice > best[0]:   # before the yield: a cancel there keeps this epoch
                best = (val_dice, epoch, _cpu_state(network))
            yield TrainStep(epoch, settings.epochs, settings.steps_per_epoch, settings.steps_per_epoch,
                            float(np.mean(losses)), val_dice)
            if stopped_by == "time":
                break
    except GeneratorExit:
        if settings.keep_best_on_cancel and best[1] > 0:
            versions.write(bundle, best[2], {**record, "cancelled": True, "best_epoch": best[1],
                                             "best_validation_dice": round(best[0], 4), "history": history}, output)
        raise
    improved = best[1] > 0
    record.update(best_epoch=best[1], best_validation_dice=round(best[0], 4), improved=improved, history=history,
                  seconds=round(time.perf_counter() - start, 1))
    version = versions.write(bundle, best[2], record, output)
    return {"version": version, "base_dice": base_dice, "best_dice": best[0], "best_epoch": best[1],
            "history": history, "seconds": time.perf_counter() - start, "training_cases": train_ids,
            "validation_cases": val_ids, "stopped_by": stopped_by}


def _cpu_state(network) -> dict:
    return {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}


class CorrectionWeightedLoss:
    """Dice + voxel-weighted binary cross-entropy on the network's logits ``(B, 1, n, n, n)``.

    Edited voxels weigh ``1 + correction_weight`` in the cross-entropy (the segmentation fine-tune's
    rule, :class:`~napari_medvision.core.training.finetune.CorrectionAwareLoss`); at weight 0 this is
    MONAI's ``DiceCELoss(sigmoid=True)``.
    """

    def __init__(self, correction_weight: float = 0.0):
        from monai.losses import DiceLoss

        self.correction_weight = float(correction_weight)
        self.dice = DiceLoss(sigmoid=True)

    def __call__(self, logits, targets, edited=None):
        import torch

        logits = logits.float()
        cross_entropy = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        weight = torch.ones_like(cross_entropy)
        if self.correction_weight and edited is not None:
            weight = weight + self.correction_weight * edited.to(weight.device).float()
        return self.dice(logits, targets) + (cross_entropy * weight).sum() / weight.sum()


def _checked_cases(store) -> list[str]:
    cases = store.check().case_ids()
    if not cases:
        raise MedvisionError(f"the case store '{store.root}' has no complete cases yet: add a corrected case first")
    for case_id in cases:
        store.check_geometry(case_id)
    return cases


def _case_source(store, case_id: str, correction_weight: float = 0.0):
    """A case as an example :class:`~.examples.Source`: every label value's pieces are structures;
    with its edit mask, if any, and (``correction_weight`` > 0) edited structures drawn
    ``1 + correction_weight`` times as often."""
    from .examples import make_source

    image, label = store.read_case(case_id)
    values = [int(v) for v in np.unique(label.array) if v > 0]
    source = make_source(case_id, image.array, np.asarray(image.spacing, float)[::-1], label.array, values)
    edits = store.read_edits(case_id)
    if edits is not None and edits.shape == label.shape and edits.array.any():
        source.edits = (edits.array > 0).astype(np.float32)
        if correction_weight and source.structures:
            touched = [bool(source.edits[box][mask].any()) for _, _, box, mask in source.structures]
            source.structure_weights = 1.0 + correction_weight * np.asarray(touched, float)
    return source


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
    device = next(network.parameters()).device
    for block, truth in examples:
        positive, negative = clicks_for(network, block, truth, rng, rounds=2)
        with torch.no_grad():
            inputs = torch.from_numpy(network_input(block, positive, negative))[None].to(device)
            logits = network(inputs)[0, 0].float().cpu().numpy()
        scores.append(dice(logits > 0, truth))
    return float(np.mean(scores)) if scores else float("nan")
