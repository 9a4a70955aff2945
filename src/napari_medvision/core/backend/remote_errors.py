"""Exceptions across a process boundary: the same class and message on the other side.

A :class:`~napari_medvision.core.errors.MedvisionError` travels as itself. Any other failure
travels as the innermost exception of its chain (MONAI wraps the real error in its own), so the
caller sees what an in-process run would show as the root cause. What cannot be pickled is
rebuilt from its class (or the nearest base class that takes a message) and its message.
"""

from __future__ import annotations

import importlib
import logging
import pickle
import traceback

from ..errors import MedvisionError
from .base import BackendError

log = logging.getLogger(__name__)


def describe(exc: BaseException) -> dict:
    """A picklable description of ``exc`` (see the module docstring)."""
    chosen = exc
    if not isinstance(exc, MedvisionError):
        while chosen.__cause__ is not None:
            chosen = chosen.__cause__
    return {"pickled": _pickled(chosen), "message": str(chosen),
            "classes": [(cls.__module__, cls.__qualname__) for cls in type(chosen).__mro__],
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}


def rebuild(description: dict) -> BaseException:
    """The exception :func:`describe` described (its remote traceback goes to the debug log)."""
    log.debug("failure in the compute worker:\n%s", description.get("traceback", ""))
    if description["pickled"] is not None:
        try:
            return pickle.loads(description["pickled"])
        except Exception:  # noqa: BLE001 - a class this process cannot import: rebuild it below
            pass
    for module, name in description["classes"]:
        cls = _importable(module, name)
        if cls is None or not issubclass(cls, Exception):
            continue
        try:
            return cls(description["message"])
        except Exception:  # noqa: BLE001 - this class wants other arguments: try its base
            continue
    return BackendError(description["message"])


def _pickled(exc: BaseException) -> bytes | None:
    try:
        data = pickle.dumps(exc)
        copy = pickle.loads(data)
    except Exception:  # noqa: BLE001 - e.g. an exception whose __init__ takes more than its args
        return None
    return data if type(copy) is type(exc) and str(copy) == str(exc) else None


def _importable(module: str, qualname: str):
    try:
        target = importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError):
        return None
    return target if isinstance(target, type) else None
