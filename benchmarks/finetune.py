"""Fine-tuning the sample U-Net on 3 corrected cases of a shifted appearance.

The shipped U-Net was trained on phantoms in one CT contrast; here the cases come in
another (``shift_appearance``: as from another scanner or protocol). Prints the held-out
Dice before and after fine-tuning on 3 corrected cases, and the CPU seconds it took.
Goal: +0.15 mean Dice within 5 minutes on a 2-core machine. Run:

    .venv/bin/python benchmarks/finetune.py [--minutes 4.5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_medvision.core.models.bundle import SAMPLE_MODELS_DIR
from napari_medvision.core.models import load_bundle
from napari_medvision.core.phantom import generate_phantom, shift_appearance
from napari_medvision.core.training import CaseStore
from napari_medvision.core.training.finetune import FinetuneSettings, evaluate, finetune
from napari_medvision.core.phantom import LABELS
from napari_medvision.samples.common import PHANTOM
from napari_medvision.core.training.versions import VersionStore


def drain(generator):
    while True:
        try:
            step = next(generator)
        except StopIteration as stop:
            return stop.value
        if getattr(step, "val_dice", None) is not None:
            print(f"  epoch {step.epoch}: loss {step.loss:.4f}, validation Dice {step.val_dice:.4f}")


def store_of(root: Path, seeds) -> CaseStore:
    store = CaseStore.create(root, LABELS)
    for seed in seeds:
        case = shift_appearance(generate_phantom(seed, **PHANTOM))
        store.add_case(f"shifted_{seed}", case.image, case.label)
    return store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=4.5)  # training; the rest of the 5 minutes: set-up, saving
    parser.add_argument("--held-out", type=int, default=6)
    args = parser.parse_args()
    base = load_bundle(SAMPLE_MODELS_DIR / "ct_organs_unet")
    work = Path(tempfile.mkdtemp(prefix="medvision-finetune-"))
    corrected = store_of(work / "corrected", [71, 72, 73])
    held_out = store_of(work / "held_out", range(9001, 9001 + args.held_out))
    before = evaluate_quietly(base, held_out)
    settings = FinetuneSettings(epochs=100, max_minutes=args.minutes, learning_rate=5e-4, steps_per_epoch=15,
                                patience=100, validation_cases=["shifted_73"])
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    result = drain(finetune(base, corrected, VersionStore(work / "versions"), settings, device="cpu"))
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    after = evaluate_quietly(load_bundle(result.version.path), held_out)
    print(f"\nfine-tuned on 3 corrected shifted cases (2 train + 1 validation), {len(result.history)} epochs, "
          f"best epoch {result.best_epoch}; {wall:.0f} s wall, {cpu:.0f} s CPU (2 cores)")
    print(f"{'label':<10}{'before':>9}{'after':>9}{'change':>9}")
    for name in before["dice"]:
        b, a = before["dice"][name], after["dice"].get(name, float("nan"))
        print(f"{name:<10}{b:>9.3f}{a:>9.3f}{a - b:>+9.3f}")
    gain = after["mean_dice"] - before["mean_dice"]
    print(f"{'mean':<10}{before['mean_dice']:>9.3f}{after['mean_dice']:>9.3f}{gain:>+9.3f}")
    print(f"\nheld-out: {args.held_out} shifted phantoms; goal +0.15 mean Dice within 5 minutes: "
          f"{'met' if gain >= 0.15 and wall <= 300 else 'not met'}")


def evaluate_quietly(bundle, store):
    generator = evaluate(bundle, store, device="cpu")
    while True:
        try:
            next(generator)
        except StopIteration as stop:
            return stop.value


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
