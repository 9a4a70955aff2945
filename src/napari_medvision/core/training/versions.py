"""Numbered model versions: every fine-tuning run writes a new complete bundle, never overwriting.

::

    ROOT/v001/   configs/, models/model.pt, docs/version.json (+ README.md)
    ROOT/v002/   ...

A version folder is assembled under a temporary name and renamed into place, so it
exists whole or not at all. ``docs/version.json`` records the parent, the cases,
the date and the metrics.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .._atomic import write_json_atomic
from ..errors import MedvisionError
from ..models import Bundle, load_bundle

_VERSION = re.compile(r"^v(\d{3,})$")


@dataclass
class ModelVersion:
    number: int
    path: Path
    record: dict

    @property
    def name(self) -> str:
        return self.path.name


class VersionStore:
    """The versions of one model under ``root``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def versions(self) -> list[ModelVersion]:
        found = []
        if self.root.is_dir():
            for folder in sorted(self.root.iterdir()):
                match = _VERSION.match(folder.name)
                if match and (folder / "models" / "model.pt").is_file():
                    record_path = folder / "docs" / "version.json"
                    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
                    found.append(ModelVersion(int(match.group(1)), folder, record))
        return sorted(found, key=lambda v: v.number)

    def next_number(self) -> int:
        versions = self.versions()
        return versions[-1].number + 1 if versions else 1

    def write(self, base: Bundle, state: dict, record: dict, path: Path | None = None) -> ModelVersion:
        """Write a new version: ``base``'s configs with ``state`` as weights, and ``record``.

        Args:
            path: write exactly this folder (the CLI's NEW_MODEL_DIR) instead of the next ``vNNN``.

        Raises:
            MedvisionError: ``path`` exists already (versions are never overwritten).
        """
        number = self.next_number()
        target = Path(path) if path is not None else self.root / f"v{number:03d}"
        if target.exists():
            raise MedvisionError(f"'{target}' exists; a new version never overwrites another")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            shutil.copytree(base.path / "configs", staging / "configs")
            if (base.path / "docs").is_dir():
                shutil.copytree(base.path / "docs", staging / "docs", ignore=shutil.ignore_patterns("version.json"))
            (staging / "models").mkdir()
            (staging / "docs").mkdir(exist_ok=True)
            torch.save({k: v.detach().cpu() for k, v in state.items()}, staging / "models" / "model.pt")
            full = {"version": target.name, "parent": str(base.path), "date": _now(), **record}
            write_json_atomic(staging / "docs" / "version.json", full)
            staging.rename(target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return ModelVersion(number, target, full)

    def bundle(self, version: ModelVersion | str) -> Bundle:
        name = version.name if isinstance(version, ModelVersion) else version
        return load_bundle(self.root / name)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
