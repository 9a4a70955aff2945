"""What every sample recipe shares: the phantom settings, seeds, the two-window CT input, writing a bundle.

The recipes (:mod:`.segmentation`, :mod:`.classifier`, :mod:`.detector`) import this module and
nothing of each other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core._atomic import write_json_atomic

#: Phantom settings of the training and held-out cases (variation as in the issue: size,
#: position, noise, contrast, lesion count, slice thickness).
PHANTOM = {"shape": (64, 128, 128), "spacing": (2.8, 2.8, 5.0), "vary_slice_thickness": True}
#: Held-out cases come from ``seed + HELD_OUT_SEED``: seeds no training or validation case used.
HELD_OUT_SEED = 10_000


def two_window_steps(lung=(-1000.0, 400.0), soft_tissue=(-100.0, 250.0)) -> list[dict]:
    """MONAI steps turning the CT ``image`` into two channels: a lung window and a soft-tissue window
    (nodules stand out in the first; liver lesions, 40-80 HU darker than liver, only in the second)."""
    window = {"b_min": 0.0, "b_max": 1.0, "clip": True}
    return [
        {"_target_": "CopyItemsd", "keys": "image", "times": 1, "names": "soft_tissue"},
        {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": lung[0], "a_max": lung[1], **window},
        {"_target_": "ScaleIntensityRanged", "keys": "soft_tissue", "a_min": soft_tissue[0],
         "a_max": soft_tissue[1], **window},
        {"_target_": "ConcatItemsd", "keys": ["image", "soft_tissue"], "name": "image"},
        {"_target_": "DeleteItemsd", "keys": "soft_tissue"},
    ]


def case_seeds(seed: int, count: int) -> list[int]:
    """``count`` phantom seeds derived from one master seed (NumPy's ``SeedSequence``)."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(count)]


def drain(generator):
    """Run an engine generator to its end and return its result."""
    while True:
        try:
            next(generator)
        except StopIteration as stop:
            return stop.value


def package_version(package: str) -> str:
    """Installed version of ``package`` for a model card ("" when it is not installed)."""
    from importlib.metadata import version

    try:
        return version(package)
    except Exception:  # noqa: BLE001 - a missing distribution only blanks a card field
        return ""


def torch_version() -> str:
    """The torch release without its local build tag (``2.4.1+cpu`` -> ``2.4.1``)."""
    return torch.__version__.split("+")[0]


def write_bundle(output: Path, inference: dict, metadata: dict, network: torch.nn.Module) -> None:
    """Write a MONAI bundle folder: the two configs and the network's weights as a plain state dict."""
    (output / "configs").mkdir(parents=True, exist_ok=True)
    (output / "models").mkdir(exist_ok=True)
    (output / "docs").mkdir(exist_ok=True)
    write_json_atomic(output / "configs" / "inference.json", inference)
    write_json_atomic(output / "configs" / "metadata.json", metadata)
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    temp = output / "models" / ".model.pt.tmp"
    torch.save(state, temp)
    temp.replace(output / "models" / "model.pt")
