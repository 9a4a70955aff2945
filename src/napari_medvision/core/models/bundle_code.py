"""A trusted bundle's own code: its root importable while it is built, and nothing left behind.

MONAI's bundle runner puts the bundle root on ``sys.path`` so that ``_target_`` names such as
``scripts.detection_inferer.RetinaNetInferer`` resolve to the bundle's ``scripts/`` package.
Every zoo bundle calls that package ``scripts``, so two bundles built in one process would
share the first one's modules. :func:`bundle_code` gives each build a clean ``scripts``
namespace and restores ``sys.path`` and the previous ``scripts*`` modules afterwards; the
objects built keep their own classes (modules stay referenced through them).
"""

from __future__ import annotations

import importlib
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

#: Top-level package names a bundle ships beside its configs.
PACKAGES = ("scripts",)
_LOCK = threading.RLock()


@contextmanager
def bundle_code(root: str | Path, enabled: bool = True):
    """While the block runs, ``root`` is importable and ``scripts*`` modules are this bundle's only.

    Args:
        root: the bundle folder (holding ``scripts/``).
        enabled: False (untrusted bundles) does nothing: no code of the bundle becomes importable.
    """
    root = Path(root)
    if not enabled or not any((root / p).exists() for p in PACKAGES):
        yield
        return
    with _LOCK:  # sys.path and sys.modules are process-wide
        saved_path = list(sys.path)
        saved_modules = _take_modules()
        sys.path.insert(1, str(root))
        importlib.invalidate_caches()
        try:
            yield
        finally:
            _take_modules()  # this bundle's modules leave sys.modules (its objects keep them alive)
            sys.modules.update(saved_modules)
            sys.path[:] = saved_path
            importlib.invalidate_caches()


def _take_modules() -> dict:
    """Remove and return the ``scripts`` / ``scripts.*`` entries of ``sys.modules``."""
    names = [n for n in sys.modules if n.split(".")[0] in PACKAGES]
    return {n: sys.modules.pop(n) for n in names}
