"""Model Zoo bundles for prompted segmentation, run in their own format behind :class:`.InteractiveEngine`.

Two styles exist in the MONAI Model Zoo, told apart by what their inference config builds:

- DeepEdit (``spleen_deepedit_annotation``): clicks per label name become Gaussian guidance
  channels beside the image (``monai.apps.deepedit`` transforms in ``preprocessing``);
- VISTA3D (``vista3d``): ``points`` + ``point_labels`` go to the network itself
  (a ``VISTA3D`` / ``vista3d132`` network, ``monai.apps.vista3d`` transforms).

Both are bundles like any other (:func:`..models.find_model`), so they pass the same trust gate.
"""

from __future__ import annotations

import json
from pathlib import Path

from .base import InteractiveEngine

#: ``_target_`` names (last component) that mark a DeepEdit-style preprocessing.
DEEPEDIT_MARKERS = frozenset({"AddGuidanceFromPointsDeepEditd", "AddGuidanceSignalDeepEditd"})
#: Words in ``network_def`` / transform names that mark a VISTA3D-style bundle.
VISTA3D_MARKERS = ("vista3d", "VistaPreTransformd", "VistaPostTransformd")


def bundle_style(bundle) -> str | None:
    """``"deepedit"``, ``"vista3d"`` or None (not a prompted bundle), from the config alone (nothing built)."""
    config = getattr(bundle, "config", None)
    if not isinstance(config, dict):
        return None
    targets = {str(t).split(".")[-1] for t in _targets(config)}
    if targets & DEEPEDIT_MARKERS:
        return "deepedit"
    network = json.dumps(config.get("network_def", ""))
    if any(m.lower() in network.lower() for m in VISTA3D_MARKERS) or targets & set(VISTA3D_MARKERS):
        return "vista3d"
    return None


def zoo_engine(name_or_path: str | Path, trusted: bool = False, device: str = "auto",
               label: str | None = None) -> InteractiveEngine | None:
    """The engine running the bundle ``name_or_path`` (registry name or folder), None if it is no prompted bundle.

    ``label``: for a DeepEdit bundle of several structures, the label name the clicks are for
    (default: its first one besides background).

    Raises:
        ModelError: no model of that name.
    """
    from ..models import find_model

    model = find_model(name_or_path, trusted=trusted)
    style = bundle_style(model)
    if style == "deepedit":
        from .deepedit import DeepEditEngine

        return DeepEditEngine(model, device=device, label=label)
    if style == "vista3d":
        from .vista3d import Vista3dEngine

        return Vista3dEngine(model, device=device)
    return None


def label_names(bundle) -> list[str]:
    """A DeepEdit bundle's label names, read from its config alone (nothing evaluated, nothing built).

    The ``label_names`` of its ``AddGuidanceFromPointsDeepEditd`` (a dict, or a plain ``@key``
    reference to one), else the names of the bundle's output channels; background first as given.
    """
    config = getattr(bundle, "config", None) or {}
    for node in _components(config):
        if str(node.get("_target_", "")).split(".")[-1] != "AddGuidanceFromPointsDeepEditd":
            continue
        names = node.get("label_names")
        if isinstance(names, str) and names.startswith("@") and names[1:] in config:
            names = config[names[1:]]
        if isinstance(names, dict) and names:
            return [str(name) for name in names]
    return [str(name) for name in getattr(bundle, "labels", {}).values()]


def _components(node) -> list[dict]:
    if isinstance(node, dict):
        return ([node] if isinstance(node.get("_target_"), str) else []) + \
            [c for value in node.values() for c in _components(value)]
    if isinstance(node, list):
        return [c for value in node for c in _components(value)]
    return []


def _targets(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["_target_"]] if isinstance(node.get("_target_"), str) else []
        return found + [t for value in node.values() for t in _targets(value)]
    if isinstance(node, list):
        return [t for value in node for t in _targets(value)]
    return []
