"""Small helpers shared by the ``medvision`` command modules."""

from __future__ import annotations

import sys


def _warn(warnings) -> None:
    """Each warning as one ``warning: ...`` line on stderr."""
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
