"""Trust the user gave a bundle, remembered by the bundle's content hash.

The hash covers what decides what runs: every file under ``configs/`` and
``scripts/`` (names and bytes) and the weights under ``models/`` (names, sizes and
a hash of their content, of the first and last MiB for files over 64 MiB), so an
edited bundle is asked about again. The store is a JSON file in the user's settings
folder, ``~/.napari-medvision/trusted_bundles.json`` (``$MEDVISION_TRUST_FILE``
overrides it), written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from .._atomic import write_json_atomic
from ..errors import MedvisionError

TRUST_FILE_ENV = "MEDVISION_TRUST_FILE"
DEFAULT_TRUST_FILE = Path.home() / ".napari-medvision" / "trusted_bundles.json"
_WHOLE_FILE_LIMIT = 64 * 2**20
_EDGE = 2**20


def trust_file() -> Path:
    """Where remembered trust is kept."""
    return Path(os.environ.get(TRUST_FILE_ENV) or DEFAULT_TRUST_FILE).expanduser()


def content_hash(bundle_path: str | Path) -> str:
    """SHA-256 (hex) of a bundle's configs, scripts and weights list."""
    return folders_hash(bundle_path, ("configs", "scripts", "models"))


def folders_hash(bundle_path: str | Path, folders: tuple[str, ...]) -> str:
    """SHA-256 (hex) of the files (names, sizes, bytes) in some of a bundle's folders; big weights by their edges."""
    root = Path(bundle_path)
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(p for p in (root / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(f"{path.relative_to(root).as_posix()}\0{path.stat().st_size}\0".encode())
            digest.update(_file_digest(path, whole=folder != "models" or path.stat().st_size <= _WHOLE_FILE_LIMIT))
    return digest.hexdigest()


def _file_digest(path: Path, whole: bool) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        if whole:
            for block in iter(lambda: stream.read(_EDGE), b""):
                digest.update(block)
        else:
            digest.update(stream.read(_EDGE))
            stream.seek(-_EDGE, os.SEEK_END)
            digest.update(stream.read(_EDGE))
    return digest.digest()


def remember(bundle_path: str | Path, name: str) -> str:
    """Record that the user trusts the bundle as it is now; returns its content hash."""
    digest = content_hash(bundle_path)
    records = _read()
    records[digest] = {"name": name, "path": str(Path(bundle_path).resolve()),
                       "trusted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _write(records)
    return digest


def is_trusted(bundle_path: str | Path) -> bool:
    """Whether the user trusted this bundle with exactly its present content."""
    records = _read()
    return bool(records) and content_hash(bundle_path) in records


def trusted_bundles() -> list[dict]:
    """Every remembered bundle: ``{"hash", "name", "path", "trusted_at"}``, oldest first."""
    return sorted(({"hash": digest, **record} for digest, record in _read().items()),
                  key=lambda record: record.get("trusted_at", ""))


def revoke(name_or_hash: str) -> list[dict]:
    """Forget the trust given to bundles of that name (or hash, or hash prefix of 8+ characters).

    Raises:
        MedvisionError: nothing remembered matches.
    """
    records = _read()
    gone = [digest for digest, record in records.items()
            if name_or_hash in (record.get("name"), digest) or (len(name_or_hash) >= 8 and digest.startswith(name_or_hash))]
    if not gone:
        raise MedvisionError(f"no trusted bundle matches '{name_or_hash}' (see 'medvision trust list')")
    removed = [{"hash": digest, **records.pop(digest)} for digest in gone]
    _write(records)
    return removed


def _read() -> dict[str, dict]:
    try:
        data = json.loads(trust_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    bundles = data.get("bundles") if isinstance(data, dict) else None
    return {k: v for k, v in bundles.items() if isinstance(v, dict)} if isinstance(bundles, dict) else {}


def _write(records: dict[str, dict]) -> None:
    path = trust_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"version": 1, "bundles": records})
