"""Checks of the ``medvision`` command's arguments, run before any model is built or image read.

Option types raise :class:`argparse.ArgumentTypeError` (argparse prints them as one ``error:`` line);
path checks raise :class:`~.core.errors.MedvisionError` subclasses. Each is a small function so that
a command calls the ones it needs first, and expensive work never starts on a command that will fail.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .core.errors import MedvisionError


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def overlap(text: str) -> float:
    value = _number(text, float)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1 (a fraction of a window), not {value:g}")
    return value


def fraction(text: str) -> float:
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value:g}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value:g}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {value:g}")
    return value


def _number(text: str, kind: type):
    """``kind(text)`` for argparse, refusing NaN and infinity; a bad value is one argparse error line."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not {'a whole number' if kind is int else 'a number'}") from None
    if kind is float and value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
    return value


def check_input(path: str) -> None:
    """The study path exists (its type and contents are checked by the reader, still before any model)."""
    from .core.errors import UnreadableFileError

    if not Path(path).exists():
        raise UnreadableFileError(f"'{path}' does not exist")


def check_infer_output(output: str | None, task: str, inputs=()) -> None:
    """The --output of ``infer`` could be written: its ending fits the task, its folder is writable,
    it is none of the ``inputs``."""
    if output is None:
        return
    from .core.io import WRITE_EXTENSIONS, check_destination

    if task == "detection" and not output.lower().endswith(".json"):
        raise MedvisionError("a detection result is a list of boxes: give --output a .json file name")
    check_destination(output, (".json",) if task == "detection" else WRITE_EXTENSIONS, inputs=tuple(inputs))


def checked_store(folder: str):
    """The case store at ``folder``, refused unless it is one (a folder with a readable dataset.json)."""
    from .core.training import CaseStore

    return CaseStore(folder).check()
