"""Trust findings remembered by what they depend on, so listing models needs MONAI only when a bundle changed.

Judging a bundle (:meth:`Bundle.code_findings`) runs MONAI's config parser, and importing
MONAI and torch costs seconds: too much for ``medvision models`` or opening the Run-model
dock. The verdict depends only on the bundle's configs and scripts, on the gate's own code
and on the MONAI and torch it ran with, so it is kept in a small JSON file under that key:
``$MEDVISION_CACHE/trust_findings.json`` (``~/.napari-medvision/cache`` by default).
An edited config, a new gate or another MONAI judges again. The cache only speeds up the
display: building a bundle always runs the gate on the very config it builds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Callable

from .._atomic import write_json_atomic
from .trust_store import folders_hash

log = logging.getLogger(__name__)
CACHE_ENV = "MEDVISION_CACHE"
DEFAULT_CACHE = Path.home() / ".napari-medvision" / "cache"
#: Verdicts kept; the oldest go first.
MAX_ENTRIES = 500
#: The modules whose code decides a verdict.
_GATE_MODULES = ("trust.py", "trust_rules.py", "bundle.py")


def cache_file() -> Path:
    """The JSON file the verdicts are kept in."""
    folder = os.environ.get(CACHE_ENV)
    return (Path(folder).expanduser() if folder else DEFAULT_CACHE) / "trust_findings.json"


@lru_cache(maxsize=1)
def gate_key() -> str:
    """What else a verdict depends on: the gate's source and the installed MONAI and torch."""
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in _GATE_MODULES:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes())
    for package in ("monai", "torch"):
        try:
            digest.update(f"{package}={metadata.version(package)}\0".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{package}=none\0".encode())
    return digest.hexdigest()


def cached_findings(bundle_path: str | Path, judge: Callable[[], list[str]]) -> list[str]:
    """The findings for the bundle at ``bundle_path``: remembered, or ``judge()`` run and remembered.

    Args:
        bundle_path: the bundle folder (its ``configs/`` and ``scripts/`` make the key).
        judge: computes the findings (imports MONAI); called only on a miss.
    """
    key = hashlib.sha256(f"{folders_hash(bundle_path, ('configs', 'scripts'))}:{gate_key()}".encode()).hexdigest()
    entries = _read()
    if isinstance(entries.get(key), list):
        return [str(finding) for finding in entries[key]]
    findings = judge()
    entries.pop(key, None)
    entries[key] = findings
    _write(dict(list(entries.items())[-MAX_ENTRIES:]))
    return findings


def _read() -> dict:
    try:
        data = json.loads(cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data.get("findings", {}) if isinstance(data, dict) and isinstance(data.get("findings"), dict) else {}


def _write(entries: dict) -> None:
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"version": 1, "findings": entries})
    except OSError as exc:  # a read-only home only costs speed
        log.info("could not remember trust findings in %s: %s", path, exc)
