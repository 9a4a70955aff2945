"""nnU-Net v2 trained models: the results folder and the zip ``nnUNetv2_export_model_to_zip`` writes.

A results folder ``<Trainer>__<Plans>__<configuration>`` holds ``dataset.json``,
``plans.json`` and ``fold_*/checkpoint_final.pth`` (or ``checkpoint_best.pth``). The
network, preprocessing and prediction are nnunetv2's own (optional extra
``napari-medvision[nnunet]``); what is ours is reading the checkpoints without
unpickling them: ``torch.load(weights_only=True)`` with an allow-list of the plain
numpy types nnU-Net's trainer stores (scalars in its training log), and a check that
``plans.json`` only names library network classes before nnunetv2 imports them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import re
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, UntrustedCodeError

log = logging.getLogger(__name__)

KIND = "nnunet"
CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_best.pth")
INSTALL_HINT = "nnU-Net v2 models need nnunetv2: pip install 'napari-medvision[nnunet]'"
#: Numpy types nnU-Net's checkpoints hold (the training log's scalars): data, not code.
#: ``numpy.core`` is the same function under numpy 1.x's module name, as older checkpoints spell it.
SAFE_NUMPY_GLOBALS = [
    np._core.multiarray.scalar, (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"), np.dtype,
    np.dtypes.Float64DType, np.dtypes.Float32DType, np.dtypes.Int64DType, np.dtypes.Int32DType, np.dtypes.BoolDType,
]
#: Module prefixes ``plans.json`` may name for the network and its building blocks (nnunetv2 locates them).
SAFE_ARCHITECTURE_PREFIXES = ("dynamic_network_architectures.", "torch.nn.", "nnunetv2.")
_FOLDER = re.compile(r"^(?P<trainer>[^_]\w*?)__(?P<plans>\w+?)__(?P<configuration>\w+)$")
_LOCK = threading.Lock()


def is_nnunet_folder(path: str | Path) -> bool:
    """Whether ``path`` looks like an nnU-Net v2 results folder (dataset.json, plans.json, fold_*)."""
    path = Path(path)
    return ((path / "dataset.json").is_file() and (path / "plans.json").is_file()
            and any(p.is_dir() for p in path.glob("fold_*")))


@dataclass
class NnUNetModel:
    """An nnU-Net v2 results folder, read but not yet built.

    Attributes:
        path: the folder (``dataset.json``, ``plans.json``, ``fold_*``).
        dataset / plans: the parsed JSON files.
        trusted: allow a ``plans.json`` that names network classes outside the known libraries.
    """

    path: Path
    dataset: dict
    plans: dict
    trusted: bool = False
    _info: dict = field(default_factory=dict)

    kind = KIND
    task = "segmentation"

    # --- description ------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def display_name(self) -> str:
        return f"{self.plans.get('dataset_name', self.name)} ({self.configuration or 'nnU-Net'})"

    @property
    def configuration(self) -> str | None:
        """From the folder name (or our note from import); the checkpoints' own name wins when run."""
        match = _FOLDER.match(self.path.name)
        return match["configuration"] if match else self._info.get("configuration")

    @property
    def description(self) -> str:
        folds = ", ".join(self.available_folds()) or "none"
        return (f"nnU-Net v2 model of {self.plans.get('dataset_name', '?')}, configuration "
                f"{self.configuration or '?'} (folds: {folds})")

    @property
    def metadata(self) -> dict:
        return {"name": self.display_name, "description": self.description}

    @property
    def colors(self) -> dict[int, str]:
        return {}

    @cached_property
    def channel_names(self) -> list[str]:
        """Input channels in nnU-Net's order (``dataset.json`` ``channel_names``, or ``modality`` of v1)."""
        names = self.dataset.get("channel_names") or self.dataset.get("modality") or {}
        if not names:
            raise ModelError(f"nnU-Net model '{self.name}': dataset.json names no channel_names")
        return [str(names[k]) for k in sorted(names, key=int)]

    @property
    def in_channels(self) -> int:
        return len(self.channel_names)

    @property
    def spatial_dims(self) -> int:
        config = self.plans.get("configurations", {}).get(self.configuration or "", {})
        return len(config.get("patch_size", (0, 0, 0)))

    @cached_property
    def labels(self) -> dict[int, str]:
        """Label value in the output -> name, as nnU-Net writes it (regions: ``regions_class_order``)."""
        raw = self.dataset.get("labels") or {}
        regions = [(name, value) for name, value in raw.items() if name != "ignore"
                   and not (np.isscalar(value) and int(value) == 0)
                   and not (isinstance(value, (list, tuple)) and set(value) == {0})]
        if any(isinstance(v, (list, tuple)) and len(v) > 1 for _, v in regions):
            order = self.dataset.get("regions_class_order")
            if not order or len(order) != len(regions):
                raise ModelError(f"nnU-Net model '{self.name}' has region labels but no matching "
                                 "regions_class_order in dataset.json")
            return {int(value): name for (name, _), value in zip(regions, order)}
        return {int(v[0] if isinstance(v, (list, tuple)) else v): name for name, v in regions}

    def summary(self) -> dict:
        """The ``medvision models --json`` record (the trust keys as for bundles: see :meth:`trust_findings`)."""
        findings = self.trust_findings()
        return {"name": self.name, "task": self.task, "path": str(self.path), "kind": self.kind,
                "labels": {str(k): v for k, v in self.labels.items()}, "description": self.description,
                "needs_trust": bool(findings), "trust_findings": findings, "trusted": False,
                "channels": self.channel_names, "folds": self.available_folds()}

    def trust_findings(self) -> list[str]:
        """Classes ``plans.json`` names outside the known network libraries (checkpoints are never unpickled)."""
        found = []
        for name, config in self.plans.get("configurations", {}).items():
            arch = config.get("architecture") or {}
            named = [arch.get("network_class_name")] + [(arch.get("arch_kwargs") or {}).get(k)
                                                        for k in arch.get("_kw_requires_import") or ()]
            found += [f"plans.json configuration '{name}' builds '{target}'" for target in named
                      if isinstance(target, str) and target and not target.startswith(SAFE_ARCHITECTURE_PREFIXES)]
        return found

    # --- folds and checkpoints ----------------------------------------------------
    def available_folds(self, checkpoint: str | None = None) -> list[str]:
        """Folds with a checkpoint, as nnU-Net picks them (numbered folds; ``all`` only when alone)."""
        names = [checkpoint] if checkpoint else list(CHECKPOINTS)
        found = [p.name[len("fold_"):] for p in sorted(self.path.glob("fold_*"))
                 if any((p / n).is_file() for n in names)]
        numbered = sorted((f for f in found if f.isdigit()), key=int)
        return numbered or [f for f in found if f == "all"]

    def checkpoint_path(self, fold: str, checkpoint: str | None = None) -> Path:
        """The checkpoint file of ``fold`` (``checkpoint_final.pth`` first unless one is named).

        Raises:
            ModelError: naming the missing fold or checkpoint and what there is.
        """
        folder = self.path / f"fold_{fold}"
        if not folder.is_dir():
            raise ModelError(f"nnU-Net model '{self.name}' has no fold {fold} (folds: "
                             f"{', '.join(self.available_folds()) or 'none'})")
        for name in ([checkpoint] if checkpoint else CHECKPOINTS):
            if (folder / name).is_file():
                return folder / name
        raise ModelError(f"nnU-Net model '{self.name}': fold_{fold} has no "
                         f"{checkpoint or ' or '.join(CHECKPOINTS)}")

    def check_trust(self) -> None:
        """As for bundles: refuse what would run code the user has not trusted (see :meth:`check_architecture`)."""
        self.check_architecture()

    def check_architecture(self) -> None:
        """Refuse (unless trusted) a plans.json naming classes nnunetv2 would import from elsewhere.

        Raises:
            UntrustedCodeError: naming the first such class.
        """
        findings = [] if self.trusted else self.trust_findings()
        if findings:
            raise UntrustedCodeError(f"nnU-Net model '{self.name}': {findings[0]}, which is not a library network; "
                                     "run it only if you trust its author (--trust)")


def load_checkpoint(path: Path) -> dict:
    """Read an nnU-Net checkpoint with ``torch.load(weights_only=True)`` and :data:`SAFE_NUMPY_GLOBALS`.

    Raises:
        UntrustedCodeError: the file needs anything else unpickled (it could run code); nothing ran.
        ModelError: unreadable, or not an nnU-Net checkpoint.
    """
    import torch  # loaded when a model is built, not when one is listed

    try:
        with torch.serialization.safe_globals(SAFE_NUMPY_GLOBALS):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        named = re.search(r"GLOBAL ([\w.]+)", str(exc))
        other = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
        what = f"it names {named[1]}" if named else other[1].strip() if other else _first_line(exc)[:120]
        raise UntrustedCodeError(
            f"'{path.parent.name}/{path.name}' is not plain data: loading it would unpickle arbitrary objects "
            f"({what}); refused, nothing was run") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelError(f"'{path.parent.name}/{path.name}' cannot be read as a checkpoint: {_first_line(exc)}") \
            from None
    missing = [k for k in ("network_weights", "trainer_name", "init_args")
               if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise ModelError(f"'{path.parent.name}/{path.name}' is not an nnU-Net v2 checkpoint (no {', '.join(missing)})")
    return checkpoint


def load_nnunet(path: str | Path, trusted: bool = False) -> NnUNetModel:
    """Read an nnU-Net results folder (nothing is built, no checkpoint is read).

    Raises:
        ModelError: missing or unreadable dataset.json / plans.json, no fold with a checkpoint.
    """
    path = Path(path).expanduser().resolve()
    parts = {}
    for name in ("dataset.json", "plans.json"):
        try:
            parts[name] = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"'{path}' is not an nnU-Net model: cannot read {name} ({_first_line(exc)})") from None
    info_file = path / "medvision.json"
    info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
    model = NnUNetModel(path, parts["dataset.json"], parts["plans.json"], trusted, info)
    if not model.available_folds():
        raise ModelError(f"nnU-Net model '{path.name}' has no fold_*/{' or '.join(CHECKPOINTS)}")
    return model


def nnunet_from_zip(archive: str | Path, cache: str | Path, trusted: bool = False) -> NnUNetModel:
    """The model in an ``nnUNetv2_export_model_to_zip`` archive, extracted (once) under ``cache``.

    Only JSON files and checkpoints are extracted (never the zip's ``.pkl`` files).

    Raises:
        ModelError: unsafe or oversized zip, no model in it, or several (naming them).
    """
    from .archive import safe_extract

    archive = Path(archive)
    digest = hashlib.sha256()
    with open(archive, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    target = Path(cache) / f"{archive.stem}-{digest.hexdigest()[:16]}"
    with _LOCK:
        if not target.is_dir():
            safe_extract(archive, target, patterns=("*.json", "*fold_*/checkpoint_*.pth"))
    return load_nnunet(single_model_folder(target, archive.name), trusted)


def single_model_folder(root: Path, what: str) -> Path:
    """The one nnU-Net results folder at or below ``root``.

    Raises:
        ModelError: none, or several (naming them).
    """
    found = sorted({p.parent for p in root.rglob("plans.json") if is_nnunet_folder(p.parent)})
    if not found:
        raise ModelError(f"'{what}' holds no nnU-Net model (dataset.json, plans.json and fold_*/checkpoint_*.pth)")
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(root)) for p in found)
        raise ModelError(f"'{what}' holds several nnU-Net models ({names}); give one of their folders")
    return found[0]


def import_nnunetv2() -> Any:
    """The nnunetv2 modules we use, or a clear error naming the extra to install.

    Raises:
        ModelError: nnunetv2 is not installed.
    """
    try:
        from nnunetv2.inference import predict_from_raw_data
    except ImportError as exc:
        raise ModelError(f"{INSTALL_HINT} ({_first_line(exc)})") from None
    return predict_from_raw_data


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
