"""Device choice: CUDA, then Apple MPS, then CPU; or what the user forces."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ModelError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


def choose_device(requested: str = "auto") -> torch.device:
    """The torch device for ``requested`` (``auto``: cuda > mps > cpu).

    Raises:
        ModelError: a forced device this machine does not have.
    """
    import torch  # here, not at import: listing models or reading a study needs no torch

    requested = (requested or "auto").lower()
    if requested not in DEVICES and not requested.startswith("cuda:"):
        raise ModelError(f"unknown device '{requested}'; use one of {', '.join(DEVICES)}")
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if has_mps else torch.device("cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("CUDA was requested but no CUDA GPU is available; use --device cpu or auto")
    if requested == "mps" and not has_mps:
        raise ModelError("MPS was requested but this machine has no Apple GPU; use --device cpu or auto")
    return torch.device(requested)
