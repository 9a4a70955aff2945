"""Safe extraction of model archives (nnU-Net's exported zip).

A zip from elsewhere may try to write outside the target folder (``../``, absolute
names, links) or expand to far more than it says (a zip bomb). Members are checked by
name, only the files a model needs are extracted, and every byte written is counted
against limits, whatever the headers claim. Extraction goes to a temporary sibling
folder that is renamed into place only when complete.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import ModelError

#: Most bytes one archive may expand to (the largest public nnU-Net zips are a few GB).
MAX_TOTAL_BYTES = 32 * 1024**3
#: Most members extracted.
MAX_MEMBERS = 10_000
#: A member may be at most this many times larger than its compressed size (deflate's
#: best is about 1000:1 on runs of zeros; model weights compress about 1.1:1).
MAX_RATIO = 200
_CHUNK = 1024 * 1024


def safe_extract(archive: str | Path, target: str | Path, patterns: tuple[str, ...] = ("*",),
                 max_total_bytes: int = MAX_TOTAL_BYTES, max_members: int = MAX_MEMBERS,
                 max_ratio: float = MAX_RATIO) -> Path:
    """Extract the members of ``archive`` whose path matches one of ``patterns`` into ``target``.

    Args:
        patterns: ``fnmatch`` patterns on the member's POSIX path (``*`` crosses folders).
        max_total_bytes / max_members / max_ratio: limits against zip bombs.

    Returns:
        ``target``, complete (it did not exist before; on failure it still does not).

    Raises:
        ModelError: not a zip, an unsafe member name or link, a limit exceeded, or ``target`` exists.
    """
    archive, target = Path(archive), Path(target)
    if target.exists():
        raise ModelError(f"'{target}' already exists; remove it or choose another name")
    try:
        zipped = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"'{archive.name}' is not a readable zip file ({exc})") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        with zipped:
            members = [m for m in zipped.infolist() if not m.is_dir()]
            if len(members) > max_members:
                raise ModelError(f"'{archive.name}' has {len(members)} files (at most {max_members} allowed)")
            written = 0
            for member in members:
                relative = _safe_name(member, archive.name)
                if not any(fnmatch.fnmatch(relative.as_posix(), p) for p in patterns):
                    continue
                written += _extract_one(zipped, member, temp / relative, max_total_bytes - written, max_ratio,
                                        archive.name)
        os.replace(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return target


def _safe_name(member: zipfile.ZipInfo, archive: str) -> PurePosixPath:
    name = member.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]) or not path.parts:
        raise ModelError(f"'{archive}' holds an unsafe path '{member.filename}' (outside the folder); refused")
    mode = member.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ModelError(f"'{archive}' holds a link '{member.filename}'; refused")
    return path


def _extract_one(zipped: zipfile.ZipFile, member: zipfile.ZipInfo, destination: Path, budget: int,
                 max_ratio: float, archive: str) -> int:
    """Copy one member, counting real bytes; returns how many were written."""
    limit = min(budget, max(member.compress_size, 1) * max_ratio + _CHUNK, member.file_size)
    if member.file_size > budget:
        raise ModelError(f"'{archive}' expands to more than {MAX_TOTAL_BYTES // 1024**3} GB; refused")
    destination.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with zipped.open(member) as source, open(destination, "wb") as out:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > limit:
                raise ModelError(f"'{archive}': '{member.filename}' expands beyond its stated size or a safe "
                                 f"compression ratio (a zip bomb?); refused")
            out.write(chunk)
    return written
