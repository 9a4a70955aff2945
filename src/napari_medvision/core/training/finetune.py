"""Fine-tune a segmentation bundle on the case store's (corrected) cases.

A generator: it yields :class:`~.trainer.TrainStep` (and text for the set-up stages),
can be stopped at any step, and returns a :class:`FinetuneResult`. Each run writes a
new version of the bundle (see :mod:`.versions`); a cancelled run writes nothing unless
asked to keep its best epoch so far. The base model's own validation Dice is epoch 0:
a version is only better than its parent if some epoch beat it.

Correction-aware training: voxels the user edited (the case store's edit masks) weigh
``correction_weight`` times more in the loss, so a few corrected slices count without the
rest of the volume — the model's own output — being forgotten.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generator

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.losses import DiceLoss

from ..errors import MedvisionError, ModelError
from ..inference import segment
from ..inference.convert import to_metatensor
from ..metrics import dice_per_label
from ..models import Bundle, choose_device
from .case_store import CaseStore
from .augmentation import train_transforms
from .trainer import TrainSettings, evaluate_items, train_segmentation
from .versions import BASE, ModelVersion, VersionStore

log = logging.getLogger(__name__)
_SPATIAL = {"Orientationd", "Spacingd", "Resized", "ResizeWithPadOrCropd", "SpatialPadd", "CropForegroundd",
            "CenterSpatialCropd", "DivisiblePadd", "Flipd", "Rotate90d", "Zoomd", "EnsureChannelFirstd",
            "EnsureTyped", "SpatialCropd", "BorderPadd"}
_KEYS = ["image", "label", "edit"]


@dataclass
class FinetuneSettings:
    epochs: int = 20
    max_minutes: float = 5.0
    learning_rate: float = 3e-4
    steps_per_epoch: int = 20
    batch_size: int = 2
    validation_cases: list[str] | None = None   # default: the last ~20% of the cases
    correction_weight: float = 0.0               # 0: plain DiceCE; e.g. 4: edited voxels weigh 5x
    patience: int = 6
    seed: int = 0
    keep_best_on_cancel: bool = False


@dataclass
class FinetuneResult:
    version: ModelVersion | None
    base_dice: float
    best_dice: float
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    training_cases: list[str] = field(default_factory=list)
    validation_cases: list[str] = field(default_factory=list)
    stopped_by: str = "epochs"

    def summary(self) -> dict:
        return {"version": str(self.version.path) if self.version else None,
                "base_dice": _round(self.base_dice), "best_dice": _round(self.best_dice),
                "best_epoch": self.best_epoch, "seconds": round(self.seconds, 1), "stopped_by": self.stopped_by,
                "epochs": [{"epoch": h["epoch"], "loss": _round(h["loss"]), "val_dice": _round(h["val_dice"])}
                           for h in self.history],
                "training_cases": self.training_cases, "validation_cases": self.validation_cases}


def finetune(bundle: Bundle, store: CaseStore, versions: VersionStore, settings: FinetuneSettings | None = None,
             *, device: str = "auto", output: Path | None = None,
             group=None) -> Generator[object, None, FinetuneResult]:
    """Fine-tune ``bundle`` on ``store`` and write the result as a new version in ``versions``.

    ``group``: a :class:`~.distributed.Group` when this is one of several DDP processes
    (:mod:`.distributed` starts them); only process 0 validates and writes the version.

    Every input is checked before the model is built: the output folder, the store, the task,
    the validation cases, and each case's label (geometry and values) while it is prepared.

    Raises:
        ModelError: not a segmentation (or interactive) bundle, or cases with labels the model does not have.
        GeometryMismatchError: a case whose label does not lie on its image's grid.
        MedvisionError: no cases, an existing ``output``, or not a case store.
    """
    import time

    settings = settings or FinetuneSettings()
    start = time.perf_counter()
    if output is not None:
        check_new_model_dir(output)
    if bundle.task == "interactive":   # the click-conditioned model: simulated clicks on the corrected masks
        from ..interactive.finetune import finetune_interactive

        fields = yield from finetune_interactive(bundle, store, versions, settings, _split, output=output, group=group,
                                                 device=device)
        return FinetuneResult(**fields)
    cases = check_cases(bundle, store, "fine-tuned")
    train_ids, val_ids = _split(cases, settings.validation_cases)
    torch_device = choose_device(device)
    bundle.check_trust()                         # parsing its transforms may run the bundle's code
    num_classes = _output_channels(bundle)
    prepare = paired_preprocessing(bundle)
    items = {}
    for number, case_id in enumerate(cases):
        items[case_id] = _case_item(store, case_id, prepare, num_classes, bundle)
        yield f"preparing case {number + 1}/{len(cases)}"
    yield "building the model"
    model = bundle.build(torch_device)          # a fresh copy: the cached inference model stays untouched
    network = model.network
    roi = tuple(getattr(model.inferer, "roi_size", (64, 64, 32)))
    train_settings = TrainSettings(max_epochs=settings.epochs, max_minutes=settings.max_minutes,
                                   learning_rate=settings.learning_rate, batch_size=settings.batch_size,
                                   steps_per_epoch=settings.steps_per_epoch, patience=settings.patience,
                                   roi_size=roi, seed=settings.seed)
    val_items = [items[c] for c in val_ids]
    main = group is None or group.is_main
    # In a group every process evaluates (MONAI's metrics gather across the group), with equal weights.
    base_per_label = evaluate_items(network, val_items, num_classes, train_settings, torch_device)
    base_dice = float(np.nanmean(base_per_label))
    yield f"base model validation Dice {base_dice:.4f}"
    live: dict = {}
    loss = CorrectionAwareLoss(settings.correction_weight)
    record = {"cases": train_ids, "validation_cases": val_ids, "settings": _settings_record(settings),
              "base_validation_dice": _round(base_dice)}
    try:
        trained = yield from train_segmentation(network, [items[c] for c in train_ids], val_items, num_classes,
                                                train_settings, torch_device, train_transforms(roi, _KEYS), loss, live,
                                                group=group)
    except GeneratorExit:
        if main and settings.keep_best_on_cancel and live.get("best_dice", -1) > base_dice:
            versions.write(bundle, live["best_state"], {**record, "cancelled": True,
                                                         "best_epoch": live["best_epoch"],
                                                         "best_validation_dice": _round(live["best_dice"]),
                                                         "history": live.get("history", [])}, output)
        raise
    if not main:   # process 0 writes the version
        return FinetuneResult(None, base_dice, trained.best_dice, trained.best_epoch, trained.history,
                              time.perf_counter() - start, train_ids, val_ids, trained.stopped_by)
    improved = trained.best_dice > base_dice
    # When no epoch beat the base model, the new version keeps the parent's weights, and says so.
    state = trained.best_state if improved else bundle.build(torch.device("cpu")).network.state_dict()
    version = versions.write(bundle, state, {
        **record, "best_epoch": trained.best_epoch if improved else 0,
        "best_validation_dice": _round(max(trained.best_dice, base_dice)), "improved": improved,
        "history": trained.history, "seconds": round(time.perf_counter() - start, 1)}, output)
    return FinetuneResult(version, base_dice, max(trained.best_dice, base_dice),
                          trained.best_epoch if improved else 0, trained.history, time.perf_counter() - start,
                          train_ids, val_ids, trained.stopped_by)


def evaluate(bundle: Bundle, store: CaseStore, device: str = "auto",
             case_ids: list[str] | None = None) -> Generator[object, None, dict]:
    """Dice per label of ``bundle`` against the store's labels, in each case's own geometry.

    Cases with only one of their files are skipped with a logged warning and listed under
    ``"skipped"`` in the returned record.

    Raises:
        GeometryMismatchError: a label that does not lie on its image's grid (naming both files).
        ModelError: not a segmentation model.
        MedvisionError: not a case store, or no complete case.
    """
    scores = []
    ids = case_ids or check_cases(bundle, store, "evaluated")
    skipped = {} if case_ids else store.incomplete_cases()
    for case_id, why in skipped.items():
        log.warning("case '%s' skipped: %s", case_id, why)
    for number, case_id in enumerate(ids):
        image, label = store.read_case(case_id)
        result = yield from segment(bundle, image, device=device)
        scores.append(dice_per_label(result.labels.array, label.array, bundle.labels))
        yield f"evaluated {number + 1}/{len(ids)}"
    names = list(bundle.labels.values())
    dice = {name: _round(float(np.nanmean([s[name] for s in scores]))) for name in names
            if not all(math.isnan(s[name]) for s in scores)}
    return {"dice": dice, "mean_dice": _round(float(np.nanmean(list(dice.values())))), "cases": len(ids),
            "skipped": skipped}


def check_cases(bundle: Bundle, store: CaseStore, verb: str) -> list[str]:
    """The store's complete cases, after checking that ``bundle`` can be ``verb`` on them
    and that every label lies on its image's grid (from the headers: no voxels read).

    Raises:
        ModelError: ``bundle`` is not a segmentation model.
        GeometryMismatchError: a label on another grid than its image, naming both files.
        MedvisionError: not a case store, or one without complete cases.
    """
    if bundle.task != "segmentation":
        raise ModelError(f"only segmentation models can be {verb}; '{bundle.name}' is a {bundle.task} model")
    cases = store.check().case_ids()
    if not cases:
        missing = store.incomplete_cases()
        what = f"no complete cases ({len(missing)} miss their image or label file)" if missing else "no cases yet"
        raise MedvisionError(f"the case store '{store.root}' has {what}: add a corrected case first")
    for case_id in cases:
        store.check_geometry(case_id)
    return cases


def check_new_model_dir(output: str | Path) -> None:
    """Refuse, before training, a new-model folder that exists or could not be created.

    Raises:
        MedvisionError: ``output`` exists, or its nearest existing parent is a file or read-only.
    """
    import os

    output = Path(output)
    if output.exists():
        raise MedvisionError(f"'{output}' exists already; a new model never overwrites another: "
                             "give a folder name that does not exist")
    parent = output.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise MedvisionError(f"cannot create '{output}': '{parent}' is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MedvisionError(f"cannot create '{output}': folder '{parent}' is read-only for you")


class CorrectionAwareLoss(torch.nn.Module):
    """Dice + voxel-weighted cross-entropy; edited voxels weigh ``1 + correction_weight``."""

    def __init__(self, correction_weight: float = 0.0):
        super().__init__()
        self.correction_weight = correction_weight
        self.dice = DiceLoss(to_onehot_y=True, softmax=True)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, batch: dict) -> torch.Tensor:
        cross_entropy = torch.nn.functional.cross_entropy(logits, labels[:, 0].long(), reduction="none")
        weight = torch.ones_like(cross_entropy)
        if self.correction_weight and "edit" in batch:
            weight = weight + self.correction_weight * batch["edit"][:, 0].to(weight.device).float()
        return self.dice(logits, labels) + (cross_entropy * weight).sum() / weight.sum()


def paired_preprocessing(bundle: Bundle):
    """The bundle's preprocessing applied to image, label and edit mask alike (nearest for masks)."""
    # The config as the bundle builds it (macros expanded, image loaders dropped), so what the
    # trust gate judged is what runs here; plain JSON, copied before it is changed.
    config = copy.deepcopy(bundle._parser(torch.device("cpu")).get())
    transforms = []
    for step in config["preprocessing"]["transforms"]:
        step = dict(step)
        name = str(step.get("_target_", "")).split(".")[-1]
        if name in _SPATIAL:
            step["keys"] = _KEYS
            for mode_key in ("mode",):
                if mode_key in step or name in ("Spacingd", "Resized", "Zoomd"):
                    image_mode = step.get(mode_key, "bilinear")
                    image_mode = image_mode[0] if isinstance(image_mode, list) else image_mode
                    step[mode_key] = [image_mode, "nearest", "nearest"]
        transforms.append(step)
    # Parsed within the bundle's own config, so references such as "@image_key" resolve.
    config["_medvision_paired"] = {"_target_": "Compose", "transforms": transforms}
    parser = ConfigParser(config)
    parser["bundle_root"] = str(bundle.path)
    return parser.get_parsed_content("_medvision_paired")


def _case_item(store: CaseStore, case_id: str, prepare, num_classes: int, bundle: Bundle) -> dict:
    image, label = store.read_case(case_id)
    top = int(label.array.max(initial=0))
    if top >= num_classes:
        raise ModelError(f"case '{case_id}' has label {top}, which '{bundle.name}' does not output "
                         f"(labels 0..{num_classes - 1}); adding a new label to a pretrained model is not supported")
    edits = store.read_edits(case_id)
    edit_array = edits.array if edits is not None else np.zeros(label.shape, np.uint8)
    data = prepare({"image": to_metatensor(image), "label": to_metatensor(label),
                    "edit": to_metatensor(label.with_array(edit_array.astype(np.float32)))})
    return {key: data[key].as_tensor() for key in _KEYS}


def _split(cases: list[str], chosen: list[str] | None) -> tuple[list[str], list[str]]:
    if chosen:
        unknown = sorted(set(chosen) - set(cases))
        if unknown:
            raise MedvisionError(f"validation cases not in the store: {', '.join(unknown)}")
        train = [c for c in cases if c not in chosen]
        return (train or list(chosen)), list(chosen)
    if len(cases) == 1:
        return cases, cases  # one case: validate on it (the summary says so)
    count = max(1, round(0.2 * len(cases)))
    return cases[:-count], cases[-count:]


def _output_channels(bundle: Bundle) -> int:
    network = bundle.config.get("network_def", {})
    if isinstance(network, dict) and isinstance(network.get("out_channels"), int):
        return network["out_channels"]
    return max(bundle.labels, default=0) + 1


def _settings_record(settings: FinetuneSettings) -> dict:
    return {k: v for k, v in settings.__dict__.items()}


def _round(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 4)


def compare_versions(versions: VersionStore, first: str, second: str, cases, device: str = "auto",
                     base: Bundle | None = None) -> Generator[object, None, dict]:
    """Dice of two versions of ``versions`` (or ``"base"``) on a case store's cases, the same cases for both.

    Returns:
        ``{"cases": n, "versions": {name: {"dice": {label: d}, "mean_dice": m}}, "better": name | None}``
        (``better`` is None on a tie).
    """
    names = [BASE if str(ref).lower() == BASE else versions.get(ref).name for ref in (first, second)]
    if names[0] == names[1]:
        raise MedvisionError(f"compare two different versions, not {names[0]} with itself")
    results, count = {}, 0
    for ref, name in zip((first, second), names):
        yield f"evaluating {name}"
        record = yield from evaluate(versions.bundle_for(ref, base), cases, device=device)
        results[name] = {"dice": record["dice"], "mean_dice": record["mean_dice"]}
        count = record["cases"]
    (a, mean_a), (b, mean_b) = ((n, r["mean_dice"]) for n, r in results.items())
    better = None if mean_a == mean_b or None in (mean_a, mean_b) else (a if mean_a > mean_b else b)
    return {"cases": count, "versions": results, "better": better}


__all__ = ["CorrectionAwareLoss", "FinetuneResult", "FinetuneSettings", "check_cases", "check_new_model_dir",
           "compare_versions", "evaluate", "finetune"]
