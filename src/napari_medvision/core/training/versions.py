"""Numbered model versions and the one in use.

::

    ROOT/v001/         configs/, models/model.pt, docs/version.json (+ README.md)
    ROOT/v002/         ...
    ROOT/current.json  {"version": "v002"}: the version in use (absent or null: the base model)

Every fine-tuning run writes a new complete bundle, never overwriting. A version folder
is assembled under a temporary name and renamed into place, so it exists whole or not
at all; ``current.json`` is replaced atomically. ``docs/version.json`` records the parent
(the bundle it was fine-tuned from), the cases, the date and the metrics.

The rules (the Fine-tune dock and ``medvision versions`` both follow them):

* any version can be put in use; nothing is deleted by using or rolling back;
* roll back = put the *parent* of the version in use in use (the base model when the
  parent is not a version of this store);
* the version in use is never deleted;
* a fine-tune of a version stays in that version's family (:meth:`VersionStore.for_model`).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Generator

import torch

from .._atomic import write_json_atomic
from ..errors import MedvisionError
from ..models.bundle import Bundle, load_bundle  # not the package: the registry resolves STORE@N here

_VERSION = re.compile(r"^v(\d{3,})$")
_REF = re.compile(r"^v?(\d+)$")
CURRENT_FILE = "current.json"
#: The name :meth:`VersionStore.bundle_for` and ``medvision versions compare`` give the base model.
BASE = "base"


@dataclass
class ModelVersion:
    number: int
    path: Path
    record: dict

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def parent(self) -> Path | None:
        """The folder of the bundle this version was fine-tuned from."""
        return Path(self.record["parent"]) if self.record.get("parent") else None


class VersionStore:
    """The versions of one model under ``root``, and which one is in use."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def for_model(cls, case_store_root: str | Path, bundle: Bundle) -> "VersionStore":
        """The store of ``bundle``'s family inside a case store: ``<cases>/models/<base name>``.

        A version of a version stays in its family: ``.../models/<base>/vNNN`` -> ``<base>``.
        """
        family = bundle.path.parent.name if _VERSION.match(bundle.path.name) else bundle.name
        return cls(Path(case_store_root) / "models" / family)

    @classmethod
    def locate(cls, path: str | Path) -> "VersionStore":
        """The version store at ``path``: a folder of ``vNNN`` versions, or a case store
        whose ``models/`` holds exactly one model family.

        Raises:
            MedvisionError: neither, or a case store with several families (naming them).
        """
        path = Path(path).expanduser()
        store = cls(path)
        if store.versions() or (path / CURRENT_FILE).is_file():
            return store
        families = sorted(p for p in (path / "models").glob("*") if p.is_dir() and cls(p).versions())
        if len(families) == 1:
            return cls(families[0])
        if families:
            raise MedvisionError(f"'{path}' holds versions of several models ({', '.join(p.name for p in families)}); "
                                 f"give one of them, e.g. '{families[0]}'")
        raise MedvisionError(f"'{path}' holds no model versions (folders v001, v002, ... written by fine-tuning)")

    # --- listing -----------------------------------------------------------------
    def versions(self) -> list[ModelVersion]:
        """Every complete version, oldest first (staging and half-deleted folders are hidden)."""
        found = []
        if self.root.is_dir():
            for folder in self.root.iterdir():
                match = _VERSION.match(folder.name)
                if match and (folder / "models" / "model.pt").is_file():
                    record_path = folder / "docs" / "version.json"
                    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
                    found.append(ModelVersion(int(match.group(1)), folder, record))
        return sorted(found, key=lambda v: v.number)

    def next_number(self) -> int:
        versions = self.versions()
        return versions[-1].number + 1 if versions else 1

    def get(self, ref: int | str | ModelVersion) -> ModelVersion:
        """A version by number (``3``, ``"3"``) or name (``"v003"``).

        Raises:
            MedvisionError: no such version, listing those there are.
        """
        if isinstance(ref, ModelVersion):
            ref = ref.name
        match = _REF.match(str(ref).strip().lower())
        number = int(match.group(1)) if match else None
        for version in self.versions():
            if version.number == number:
                return version
        known = ", ".join(v.name for v in self.versions()) or "none yet"
        raise MedvisionError(f"no version '{ref}' in '{self.root}' (versions: {known})")

    def base_path(self) -> Path | None:
        """The model this family was first fine-tuned from (the oldest parent outside the store)."""
        for version in self.versions():
            if version.parent is not None and self._version_at(version.parent) is None:
                return version.parent
        return None

    # --- the version in use ----------------------------------------------------------
    def current(self) -> ModelVersion | None:
        """The version in use; None when the base model is (or the named one is gone)."""
        path = self.root / CURRENT_FILE
        if not path.is_file():
            return None
        name = json.loads(path.read_text(encoding="utf-8")).get("version")
        return next((v for v in self.versions() if v.name == name), None) if name else None

    def use(self, ref: int | str | ModelVersion) -> ModelVersion:
        """Put a version in use (an older one too: that is rolling back to it). Deletes nothing."""
        version = self.get(ref)
        self._set_current(version)
        return version

    def rollback(self) -> ModelVersion | None:
        """Put the parent of the version in use in use; returns it (None: the base model).

        Raises:
            MedvisionError: no version is in use, or its parent version was deleted.
        """
        current = self.current()
        if current is None:
            raise MedvisionError("no version is in use (the base model is): there is nothing to roll back")
        parent = self._version_at(current.parent) if current.parent is not None else None
        if parent is None and self._names_a_version(current.parent):
            raise MedvisionError(f"the parent of {current.name} ({current.parent.name}) was deleted; "
                                 "put another version in use instead")
        self._set_current(parent)
        return parent

    def delete(self, ref: int | str | ModelVersion) -> None:
        """Delete a version that is not in use (renamed away first, so it is never half-listed).

        Raises:
            MedvisionError: it is the version in use.
        """
        version = self.get(ref)
        current = self.current()
        if current is not None and current.name == version.name:
            raise MedvisionError(f"{version.name} is in use and cannot be deleted; put another version in use "
                                 "first (or roll back)")
        doomed = Path(tempfile.mkdtemp(prefix=f".deleting-{version.name}.", dir=self.root))
        os.replace(version.path, doomed / version.name)
        shutil.rmtree(doomed, ignore_errors=True)

    def current_bundle(self, base: Bundle | None = None) -> Bundle | None:
        """The bundle in use: the current version, else ``base`` (else the family's recorded base)."""
        current = self.current()
        if current is not None:
            return load_bundle(current.path)
        if base is not None:
            return base
        path = self.base_path()
        return load_bundle(path) if path is not None and path.is_dir() else None

    def _set_current(self, version: ModelVersion | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.root / CURRENT_FILE, {"version": version.name if version else None})

    def _names_a_version(self, path: Path | None) -> bool:
        """Whether ``path`` is (or was) a ``vNNN`` folder of this store."""
        return path is not None and bool(_VERSION.match(path.name)) and path.parent.resolve() == self.root.resolve()

    def _version_at(self, path: Path) -> ModelVersion | None:
        resolved = Path(path).resolve()
        return next((v for v in self.versions() if v.path.resolve() == resolved), None)

    # --- writing -------------------------------------------------------------------
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

    # --- bundles and comparison ------------------------------------------------------
    def bundle(self, version: ModelVersion | str) -> Bundle:
        name = version.name if isinstance(version, ModelVersion) else version
        return load_bundle(self.root / name)

    def bundle_for(self, ref: int | str, base: Bundle | None = None) -> Bundle:
        """A version's bundle, or the base model for ``"base"``.

        Raises:
            MedvisionError: unknown version, or no known base model.
        """
        if str(ref).lower() != BASE:
            return self.bundle(self.get(ref))
        if base is not None:
            return base
        path = self.base_path()
        if path is None or not path.is_dir():
            raise MedvisionError(f"the base model of '{self.root}' is not known or no longer exists")
        return load_bundle(path)

    def comparison_pair(self, first: str | None = None, second: str | None = None,
                        base: Bundle | None = None) -> tuple[Bundle, Bundle]:
        """The two bundles to compare: the given ones, else the last two versions, else the
        base model and the only version.

        Raises:
            MedvisionError: no version yet.
        """
        if first and second:
            return self.bundle_for(first, base), self.bundle_for(second, base)
        versions = self.versions()
        if not versions:
            raise MedvisionError("there is no version to compare yet: fine-tune first")
        if len(versions) == 1:
            return self.bundle_for(BASE, base), self.bundle(versions[0])
        return self.bundle(versions[-2]), self.bundle(versions[-1])

    def summary(self) -> list[dict]:
        """One record per version for listings: name, in use, parent, date, validation Dice."""
        current = self.current()
        return [{"version": v.name, "number": v.number, "in_use": current is not None and v.name == current.name,
                 "parent": str(v.parent) if v.parent else None, "date": v.record.get("date"),
                 "best_validation_dice": v.record.get("best_validation_dice"), "path": str(v.path)}
                for v in self.versions()]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
