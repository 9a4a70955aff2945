"""Small helpers shared by the readers: turning ITK exceptions into one line."""

from __future__ import annotations

import re


def itk_reason(exc: Exception) -> str:
    """The most useful single line of an ITK/SimpleITK exception message."""
    text = str(exc)
    described = re.findall(r"(?:Description|itk::ERROR):\s*(.+)", text)
    lines = [line.strip() for line in (described or text.splitlines()) if line.strip()]
    reason = lines[-1] if lines else type(exc).__name__
    return reason[:200]
