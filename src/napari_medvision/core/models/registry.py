"""Where models are found: shipped samples, the user's models folder, any folder given.

The user's folder is ``$MEDVISION_MODELS`` (several joined by ``os.pathsep``) or
``models_dir`` in the settings file, else ``~/.napari-medvision/models``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..errors import ModelError
from .bundle import SAMPLE_MODELS_DIR, Bundle, load_bundle

log = logging.getLogger(__name__)
SETTINGS_FILE = Path.home() / ".napari-medvision" / "settings.json"
DEFAULT_USER_MODELS = Path.home() / ".napari-medvision" / "models"


def model_folders() -> list[Path]:
    """Folders searched for bundles, in order."""
    folders = [SAMPLE_MODELS_DIR]
    env = os.environ.get("MEDVISION_MODELS")
    if env:
        folders += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    settings = _settings()
    if settings.get("models_dir"):
        folders.append(Path(settings["models_dir"]).expanduser())
    folders.append(DEFAULT_USER_MODELS)
    return folders


def list_bundles() -> list[Bundle]:
    """Every readable bundle in :func:`model_folders` (unreadable ones are logged and skipped)."""
    found, names = [], set()
    for folder in model_folders():
        if not folder.is_dir():
            continue
        for candidate in sorted(folder.iterdir()):
            if (candidate / "configs").is_dir() and candidate.name not in names:
                try:
                    bundle = load_bundle(candidate)
                    bundle.task  # noqa: B018 - validate now, not in the middle of a listing
                except ModelError as exc:
                    log.warning("skipping %s: %s", candidate, exc)
                    continue
                found.append(bundle)
                names.add(candidate.name)
    return found


def find_bundle(name_or_path: str | Path, trusted: bool = False) -> Bundle:
    """A bundle by registry name (folder or display name), by folder path, or as a version:
    ``STORE@current`` (the version in use), ``STORE@N`` / ``STORE@vNNN``, ``STORE@base``, where
    STORE is a folder of fine-tuned versions or a case store (see ``core/training/versions.py``).

    Raises:
        ModelError: nothing of that name, listing what there is.
        MedvisionError: no such version in STORE.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return load_bundle(path, trusted)
    store, at, ref = str(name_or_path).rpartition("@")
    if at and store:
        return _version_bundle(Path(store).expanduser(), ref, trusted)
    wanted = str(name_or_path).lower()
    bundles = list_bundles()
    for bundle in bundles:
        if wanted in (bundle.name.lower(), bundle.display_name.lower()):
            bundle.trusted = trusted
            return bundle
    known = ", ".join(b.name for b in bundles) or "none"
    raise ModelError(f"no model called '{name_or_path}' (known models: {known}; or give a bundle folder)")


def _version_bundle(store: Path, ref: str, trusted: bool) -> Bundle:
    """``STORE@ref``: the version in use (``current``), a numbered version, or ``base``."""
    from ..training.versions import VersionStore  # training builds on models, not the reverse

    if not store.is_dir():
        raise ModelError(f"'{store}' is not a folder; STORE@{ref} needs a folder of model versions or a case store")
    versions = VersionStore.locate(store)
    if ref.strip().lower() == "current":
        bundle = versions.current_bundle()
        if bundle is None:
            raise ModelError(f"no version of '{versions.root}' is in use and its base model is unknown; "
                             f"put one in use with 'medvision versions {store} use N'")
    else:
        bundle = versions.bundle_for(ref)
    bundle.trusted = trusted
    return bundle


def _settings() -> dict:
    try:
        return json.loads(SETTINGS_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
