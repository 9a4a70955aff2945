"""Detect truncated MetaImage (.mha) files before ITK reads them.

ITK's MetaIO library prints "M_ReadElementsData: data not read completely" straight to the
C++ error stream (no ITK switch silences it) and then fails with an unrelated system reason;
checking the byte count from the header first gives one clear line and no chatter.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UnreadableFileError

#: Bytes per voxel of MetaIO's element types.
_ELEMENT_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
                  "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
                  "MET_DOUBLE": 8}
_HEADER_LIMIT = 1 << 16


def check_metaimage_complete(path: Path) -> None:
    """Raise unless a single-file MetaImage holds every data byte its header promises.

    Files whose header this check does not understand are left to ITK.

    Raises:
        UnreadableFileError: the data part ends early.
    """
    with open(path, "rb") as stream:
        head = stream.read(_HEADER_LIMIT)
    fields, data_start = _header(head)
    if data_start is None or fields.get("ElementDataFile", "").upper() != "LOCAL":
        return
    available = path.stat().st_size - data_start
    if fields.get("CompressedData", "False").lower() == "true":
        expected = _int(fields.get("CompressedDataSize"))
    else:
        voxels = 1
        for n in fields.get("DimSize", "").split():
            voxels *= max(_int(n) or 0, 1)
        element = _ELEMENT_BYTES.get(fields.get("ElementType", ""))
        channels = _int(fields.get("ElementNumberOfChannels", "1")) or 1
        expected = voxels * element * channels if element and fields.get("DimSize") else None
    if expected is not None and available < expected:
        raise UnreadableFileError(
            f"'{path.name}' is truncated: the header promises {expected} data bytes, the file holds {available}"
        )


def _header(head: bytes) -> tuple[dict[str, str], int | None]:
    """``Key = Value`` fields up to ``ElementDataFile`` (always the last), and where the data starts."""
    fields, offset = {}, 0
    for line in head.splitlines(keepends=True):
        offset += len(line)
        key, sep, value = line.decode("latin-1").partition("=")
        if not sep:
            return fields, None
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            return fields, offset
    return fields, None


def _int(text: str | None) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None
