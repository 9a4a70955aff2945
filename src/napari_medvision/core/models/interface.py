"""What every model kind offers its callers (registry, CLI, docks), so they rarely branch on the kind.

:class:`~.bundle.Bundle` (MONAI bundles, also those wrapping an imported TorchScript / ONNX
file) and :class:`~.nnunet.NnUNetModel` both satisfy :class:`Model`. Any of them runs through
:func:`napari_medvision.core.inference.run_model` (models never import the engines: inference
builds on models, not the reverse).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

KINDS = ("bundle", "nnunet", "torchscript", "onnx")


@runtime_checkable
class Model(Protocol):
    """A model the registry found, described without being built."""

    path: object
    trusted: bool

    @property
    def name(self) -> str: ...

    @property
    def display_name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def task(self) -> str: ...

    @property
    def labels(self) -> dict[int, str]: ...

    @property
    def in_channels(self) -> int: ...

    def summary(self) -> dict: ...
