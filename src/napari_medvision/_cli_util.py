"""Small helpers shared by the ``medvision`` command modules."""

from __future__ import annotations

import sys


def _warn(warnings) -> None:
    """Each warning as one ``warning: ...`` line on stderr."""
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def drive(job, quiet: bool, shown=None):
    """Run a job generator, printing each new stage (``"text..."``) on stderr; returns its result.

    Steps are text or objects with a ``message``; ``shown(text)``, when given, picks which are printed.
    """
    last = None
    while True:
        try:
            step = next(job)
        except StopIteration as stop:
            return stop.value
        text = step if isinstance(step, str) else step.message
        if not quiet and text != last and (shown is None or shown(text)):
            print(f"{text}...", file=sys.stderr)
        last = text


def train_line(step) -> str | None:
    """One training step as a line, for the last step of each epoch (None for the others)."""
    if step.val_dice is not None:
        return f"epoch {step.epoch}/{step.max_epochs}: loss {step.loss:.4f}, validation Dice {step.val_dice:.4f}"
    if step.step == step.steps:
        return f"epoch {step.epoch}/{step.max_epochs}: loss {step.loss:.4f}"
    return None


def drive_training(job, quiet: bool):
    """Run a training / evaluation generator, printing its stages and epochs on stderr."""
    last = None
    while True:
        try:
            step = next(job)
        except StopIteration as stop:
            return stop.value
        if isinstance(step, str):
            text = step
        elif hasattr(step, "val_dice"):
            text = train_line(step)
        else:
            text = getattr(step, "message", None)
        if text and text != last and not quiet:
            print(text, file=sys.stderr)
        last = text or last
