"""Small helpers shared by the readers: ITK exceptions as one line, ITK's own warnings kept quiet."""

from __future__ import annotations

import contextlib
import re

import SimpleITK as sitk


def itk_reason(exc: Exception) -> str:
    """The most useful single line of an ITK/SimpleITK exception message."""
    text = str(exc)
    described = re.findall(r"(?:Description|itk::ERROR):\s*(.+)", text)
    lines = [line.strip() for line in (described or text.splitlines()) if line.strip()]
    reason = lines[-1] if lines else type(exc).__name__
    return reason[:200]


@contextlib.contextmanager
def quiet_itk():
    """ITK's own warnings off for the body, restored after (a plugin must not change napari's process).

    ITK prints warnings such as GDCM's "No Series were found" straight to stderr; the readers
    turn every problem they care about into an error or a :attr:`Volume.warnings` line instead.
    """
    before = sitk.ProcessObject_GetGlobalWarningDisplay()
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject_SetGlobalWarningDisplay(before)
