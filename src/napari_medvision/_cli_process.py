"""How the ``medvision`` process runs a command: library warnings to the log, MONAI's unused
optional packages imported on first use, and a quick exit once the outputs are written."""

from __future__ import annotations

import contextlib
import logging
import sys


def deferred_imports(args):
    """MONAI's optional packages a command does not use imported on first use (``defer_imports``)."""
    if not getattr(args, "defer_imports", False):
        return contextlib.nullcontext()
    from .core.deferred_imports import deferred

    return deferred()


@contextlib.contextmanager
def library_warnings_to_log():
    """Python warnings through logging (``py.warnings``, a WARNING hidden unless -v); ITK's display off."""
    import SimpleITK as sitk

    itk_before = sitk.ProcessObject_GetGlobalWarningDisplay()
    logging.captureWarnings(True)
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject_SetGlobalWarningDisplay(itk_before)
        logging.captureWarnings(False)


def exit_now(code: int) -> None:
    """Leave the process at once (after an interrupt, or once ``infer`` wrote its outputs), flushed.

    A normal interpreter exit tears down torch and MONAI: 2-13 s on a loaded CPU (measured here, also
    after ``import torch, monai`` alone), and it aborts if a sliding-window thread is still in a window.
    Every write is atomic, so nothing is left half-written by skipping the teardown.
    """
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)
