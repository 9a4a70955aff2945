"""Colours as DICOM wants them: a layer's or a model's colour to RGB floats 0..1."""

from __future__ import annotations

from ..errors import MedvisionError


def rgb_of(color) -> tuple[float, float, float]:
    """``(r, g, b)`` in 0..1 from ``"#rgb"``, ``"#rrggbb"``, ``"#rrggbbaa"`` or a 3/4-sequence of 0..1 floats.

    Raises:
        MedvisionError: a colour in none of these forms.
    """
    if isinstance(color, str):
        text = color.strip().lstrip("#")
        if len(text) in (3, 4):
            text = "".join(c * 2 for c in text)
        try:
            if len(text) in (6, 8):
                return tuple(int(text[i:i + 2], 16) / 255.0 for i in (0, 2, 4))
        except ValueError:
            pass
        raise MedvisionError(f"colour '{color}' is not a #rrggbb hex colour")
    values = [float(v) for v in color][:3]
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise MedvisionError(f"colour {color!r} is not three values between 0 and 1")
    return tuple(values)
