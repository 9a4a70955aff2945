"""Where models are found: shipped samples, the user's models folder, any folder given.

The user's folder is ``$MEDVISION_MODELS`` (several joined by ``os.pathsep``) or
``models_dir`` in the settings file, else ``~/.napari-medvision/models``. A model is a
MONAI bundle folder (bundles made from a TorchScript / ONNX file by ``medvision import``
included) or an nnU-Net v2 results folder; a path may also name an nnU-Net export zip,
extracted once under :func:`cache_folder`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..errors import ModelError
from .bundle import SAMPLE_MODELS_DIR, Bundle, load_bundle
from .nnunet import NnUNetModel, is_nnunet_folder, load_nnunet, nnunet_from_zip, single_model_folder

log = logging.getLogger(__name__)
SETTINGS_FILE = Path.home() / ".napari-medvision" / "settings.json"
DEFAULT_USER_MODELS = Path.home() / ".napari-medvision" / "models"
DEFAULT_CACHE = Path.home() / ".napari-medvision" / "cache"
#: What a model path may be, for error messages.
EXPECTED_KINDS = ("a MONAI bundle folder (configs/ + models/)",
                  "an nnU-Net v2 results folder (dataset.json, plans.json, fold_*/checkpoint_final.pth)",
                  "an nnU-Net export .zip")
BARE_NETWORK_SUFFIXES = (".ts", ".pt", ".pth", ".onnx")


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


def cache_folder() -> Path:
    """Where extracted archives are kept: ``$MEDVISION_CACHE`` or ``~/.napari-medvision/cache``."""
    env = os.environ.get("MEDVISION_CACHE")
    return Path(env).expanduser() if env else DEFAULT_CACHE


def user_models_folder() -> Path:
    """Where ``medvision import`` puts models: the first ``$MEDVISION_MODELS`` folder, else the settings' or default."""
    env = [p for p in os.environ.get("MEDVISION_MODELS", "").split(os.pathsep) if p]
    if env:
        return Path(env[0]).expanduser()
    settings = _settings()
    return Path(settings["models_dir"]).expanduser() if settings.get("models_dir") else DEFAULT_USER_MODELS


def list_models() -> list[Bundle | NnUNetModel]:
    """Every readable model (bundle or nnU-Net folder) in :func:`model_folders`; unreadable ones are logged."""
    found, names = [], set()
    for folder in model_folders():
        if not folder.is_dir():
            continue
        for candidate in sorted(folder.iterdir()):
            if candidate.name in names or not ((candidate / "configs").is_dir() or is_nnunet_folder(candidate)):
                continue
            try:
                model = load_model(candidate)
                model.task  # noqa: B018 - validate now, not in the middle of a listing
                model.labels  # noqa: B018
            except ModelError as exc:
                log.warning("skipping %s: %s", candidate, exc)
                continue
            found.append(model)
            names.add(candidate.name)
    return found


def list_bundles() -> list[Bundle]:
    """Every readable MONAI bundle in :func:`model_folders` (unreadable ones are logged and skipped)."""
    return [m for m in list_models() if isinstance(m, Bundle)]


def load_model(path: str | Path, trusted: bool = False) -> Bundle | NnUNetModel:
    """The model at ``path``, of whichever kind it is.

    Raises:
        ModelError: none of the known kinds (listing them), or a bad model of a known kind.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        if (path / "configs").is_dir():
            return load_bundle(path, trusted)
        if is_nnunet_folder(path):
            return load_nnunet(path, trusted)
        if any(path.rglob("plans.json")):
            return load_nnunet(single_model_folder(path, path.name), trusted)
    elif path.is_file() and path.suffix.lower() == ".zip":
        return nnunet_from_zip(path, cache_folder() / "nnunet", trusted)
    elif path.is_file() and path.suffix.lower() in BARE_NETWORK_SUFFIXES:
        raise ModelError(f"'{path.name}' is a bare network: it does not say what it segments or how to prepare "
                         "the image; add it with 'medvision import FILE --task ... --labels ... --spacing ... "
                         "--patch-size ...' (or 'Add model...' in the Run-model dock)")
    raise ModelError(f"'{path}' is not a model; expected " + "; or ".join(EXPECTED_KINDS))


def find_model(name_or_path: str | Path, trusted: bool = False) -> Bundle | NnUNetModel:
    """A model by registry name (folder or display name), by path (folder or nnU-Net zip), or as a
    version of a bundle: ``STORE@current`` (the version in use), ``STORE@N`` / ``STORE@vNNN``,
    ``STORE@base``, where STORE is a folder of fine-tuned versions or a case store (see
    ``core/training/versions.py``).

    Raises:
        ModelError: nothing of that name, listing what there is.
        MedvisionError: no such version in STORE.
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        return load_model(path, trusted)
    store, at, ref = str(name_or_path).rpartition("@")
    if at and store:
        return _version_bundle(Path(store).expanduser(), ref, trusted)
    wanted = str(name_or_path).lower()
    models = list_models()
    for model in models:
        if wanted in (model.name.lower(), model.display_name.lower()):
            model.trusted = trusted
            return model
    known = ", ".join(m.name for m in models) or "none"
    raise ModelError(f"no model called '{name_or_path}' (known models: {known}; or give a model folder or .zip)")


def find_bundle(name_or_path: str | Path, trusted: bool = False) -> Bundle:
    """A MONAI bundle by registry name or folder (training and evaluation need one).

    Raises:
        ModelError: nothing of that name, or a model of another kind.
    """
    model = find_model(name_or_path, trusted)
    if not isinstance(model, Bundle):
        raise ModelError(f"'{model.name}' is an {model.kind} model; this needs a MONAI bundle")
    return model


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
