"""Series pulled from a PACS, kept in the user cache folder and cleaned by size (oldest use first)."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Generator, Iterable
from pathlib import Path

import pydicom

from ..models.registry import cache_folder
from .dicomweb import PacsClient, PacsError

log = logging.getLogger(__name__)
LIMIT_ENV = "MEDVISION_PACS_CACHE_MB"
DEFAULT_LIMIT_MB = 2048
_COMPLETE = ".complete"


def pacs_cache_root() -> Path:
    """``<user cache>/pacs`` (``$MEDVISION_CACHE`` or ``~/.napari-medvision/cache``)."""
    return cache_folder() / "pacs"


def cached_series(client: PacsClient, series_uid: str,
                  progress: Callable[[int, int | None], None] | None = None) -> Path:
    """The folder holding ``series_uid`` from ``client``'s PACS, retrieved unless already cached.

    The cache is keyed by server and series; after a new retrieval the cache is trimmed to
    ``$MEDVISION_PACS_CACHE_MB`` (default 2048 MB), never removing the series just retrieved.
    """
    steps = iter_cached_series(client, series_uid)
    while True:
        try:
            done, total = next(steps)
        except StopIteration as stop:
            return stop.value
        if progress:
            progress(done, total)


def iter_cached_series(client: PacsClient, series_uid: str) -> Generator[tuple[int, int | None], None, Path]:
    """:func:`cached_series` as a generator: yields ``(received, expected)`` while retrieving."""
    server = hashlib.sha256(client.url.encode()).hexdigest()[:12]
    folder = pacs_cache_root() / server / series_uid
    if (folder / _COMPLETE).exists():
        os.utime(folder / _COMPLETE)
        return folder
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted earlier retrieval
    yield from client.iter_pull(series_uid, folder)
    (folder / _COMPLETE).touch()
    trim_cache(keep=folder)
    return folder


def trim_cache(limit_mb: float | None = None, keep: Path | None = None) -> list[Path]:
    """Remove least recently used series until the cache is under ``limit_mb``; returns those removed."""
    if limit_mb is None:
        limit_mb = float(os.environ.get(LIMIT_ENV) or DEFAULT_LIMIT_MB)
    root = pacs_cache_root()
    entries = [(marker.stat().st_mtime, marker.parent) for marker in root.glob(f"*/*/{_COMPLETE}")]
    sizes = {folder: sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) for _, folder in entries}
    total = sum(sizes.values())
    removed = []
    for _, folder in sorted(entries, key=lambda item: item[0]):
        if total <= limit_mb * 1e6:
            break
        if keep is not None and folder == keep:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        total -= sizes[folder]
        removed.append(folder)
        log.info("PACS cache: removed %s", folder.name)
    return removed


def dicom_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every DICOM file among ``paths`` (files, or folders searched recursively).

    Raises:
        PacsError: a path that does not exist.
    """
    from ..io.dicom import is_dicom_file

    found = []
    for path in map(Path, paths):
        if not path.exists():
            raise PacsError(f"'{path}' does not exist")
        candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        found += [p for p in candidates if is_dicom_file(p)]
    return found


def push_paths(client: PacsClient, paths: Iterable[str | Path]) -> int:
    """Send every DICOM file among ``paths`` (see :func:`dicom_files`); returns how many were stored."""
    return client.push(pydicom.dcmread(path) for path in dicom_files(paths))
