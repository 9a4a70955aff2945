"""MONAI's optional packages imported on first use instead of on ``import monai``.

``import monai`` (and any ``from monai.x import y``, which runs ``monai/__init__`` first) imports
every MONAI submodule, and those import their optional packages at module level through MONAI's
``optional_import`` whenever the package is installed: torchvision (which imports ``torch._dynamo``),
matplotlib, pandas, scikit-learn, ``scipy.signal``, scikit-image, huggingface_hub. A segmentation
never touches them, yet they were most of a cold ``medvision infer``'s imports: torch, MONAI's
bundle and data packages and our engine took 3.6 to 4.2 s CPU as MONAI imports them, 1.5 to 1.8 s
deferred (two cores, load ~4; ``benchmarks/imports.py``).

Inside :func:`deferred`, while MONAI is first imported, MONAI's ``optional_import`` of a package in
:data:`DEFERRED` returns a :class:`DeferredImport` (with MONAI's "available" flag) instead of the
module or attribute: it stands for what ``optional_import`` would have returned, and calls
``optional_import`` the first time it is used (an attribute read, a call, a base class, ``dir``,
copying, pickling). So a bundle, transform or network that uses one of these packages gets it as
before, only later; one that does not never pays for it.

How: a meta-path finder, active only inside :func:`deferred`, runs ``monai.utils.module`` as usual
and then wraps its ``optional_import`` before any other MONAI module binds the name (MONAI's own
modules do ``from monai.utils import optional_import``). Outside :func:`deferred` the wrapper passes
every call straight through. If MONAI was imported before, nothing changes (nothing is deferred).

What differs from importing at once: the "available" flag says the package is installed (its
files found without running it) and, when MONAI asks for a minimum version, that its installed
distribution's version passes MONAI's check; a package that is installed but fails to import, or
lacks the attribute asked for, shows up as MONAI's ``OptionalImportError`` on first use instead of as
a False flag at import time. Calls asking for a version of a package whose distribution version
cannot be read without importing it, calls with MONAI's ``as_type`` other than the default
(placeholders used as base classes or decorators), and calls for a name that reads as an exception
class (``except`` clauses take classes only; ``isinstance`` and base classes take stand-ins) are not
deferred.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.machinery
import importlib.metadata
import inspect
import sys
import threading
import types
from typing import Any, Iterator

from . import _lazy_modules

#: Packages MONAI imports at import time that a segmentation does not need (a name covers its
#: subpackages). Measured on ``import monai`` (``python -X importtime``, two cores, load 2 to 3):
#: torchvision ~1.1 s (it imports ``torch._dynamo``), scikit-learn ~0.4 s, ``scipy.ndimage`` ~0.4 s,
#: ``scipy.signal`` ~0.3 s, pandas ~0.3 s, scikit-image ~0.3 s, huggingface_hub ~0.2 s.
DEFERRED = ("torchvision", "matplotlib", "pandas", "sklearn", "scipy", "skimage", "huggingface_hub")
#: Packages MONAI imports with a plain ``import`` at import time (``monai.utils.jupyter_utils``:
#: matplotlib's ``pyplot``, ~0.5 s): their modules' code runs on first use (:mod:`._lazy_modules`).
DEFERRED_MODULES = ("matplotlib",)
#: Distribution names of import names that differ (their installed version is read from it).
_DISTRIBUTIONS = {"sklearn": "scikit-learn", "skimage": "scikit-image"}
_MONAI_MODULE = "monai.utils.module"
_ACTIVE: list[tuple[str, ...]] = []  # the packages of each open deferred() (innermost last)
_STATE_LOCK = threading.Lock()


def deferred(packages: tuple[str, ...] = DEFERRED, modules: tuple[str, ...] = DEFERRED_MODULES):
    """Context manager: MONAI, when first imported inside it, imports ``packages`` on first use.

    Process-wide while open (imports by other threads meanwhile are deferred too); calls made
    after it closes import at once, as MONAI does. Nothing is deferred if MONAI was imported before.

    Args:
        packages: import names of MONAI's ``optional_import`` calls to defer; a name covers its
            subpackages (``"scipy"``, ``"torchvision"``).
        modules: packages whose direct imports (``import matplotlib.pyplot``) are deferred too.
    """
    return _Scope(tuple(packages), tuple(modules))


class _Scope(contextlib.AbstractContextManager):
    def __init__(self, packages: tuple[str, ...], modules: tuple[str, ...]):
        self.packages, self.modules = packages, modules
        self.finder = _MonaiFinder()
        self.lazy = None

    def __enter__(self):
        with _STATE_LOCK:
            _ACTIVE.append(self.packages)
            fresh = _MONAI_MODULE not in sys.modules
            if fresh:
                sys.meta_path.insert(0, self.finder)
        if fresh and self.modules:
            self.lazy = _lazy_modules.enable(self.modules)
        return self

    def __exit__(self, *exc_info):
        if self.lazy is not None:
            _lazy_modules.disable(self.lazy)
            self.lazy = None
        with _STATE_LOCK:
            _ACTIVE.remove(self.packages)
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(self.finder)
        return None


def _deferring(module: str) -> bool:
    """Whether an ``optional_import`` of ``module`` made now is deferred."""
    with _STATE_LOCK:
        open_packages = [p for scope in _ACTIVE for p in scope]
    return any(module == p or module.startswith(p + ".") for p in open_packages)


class _MonaiFinder:
    """Finds ``monai.utils.module`` as the other finders do, and wraps its loader (:class:`_Wrapping`)."""

    def find_spec(self, name: str, path=None, target=None):
        if name != _MONAI_MODULE:
            return None
        spec = _lazy_modules.other_spec(name, path, target, self)
        if spec is not None and isinstance(spec.loader, (importlib.machinery.SourceFileLoader,
                                                         importlib.machinery.SourcelessFileLoader)):
            spec.loader = _Wrapping(spec.loader)
        return spec


class _Wrapping(_lazy_modules.Delegating):
    """Loader of ``monai.utils.module``: runs it, then wraps its ``optional_import``."""

    def exec_module(self, module: types.ModuleType) -> None:
        module.__loader__ = module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        original = getattr(module, "optional_import", None)
        if callable(original):
            module.optional_import = _wrap(original)

    def __getattr__(self, name):  # get_resource_reader, get_source, is_package...: the real loader's
        return getattr(self.loader, name)


def _wrap(original):
    try:
        signature = inspect.signature(original)
    except (TypeError, ValueError):
        return original

    @functools.wraps(original)
    def optional_import(*args, **kwargs):
        try:
            call = signature.bind(*args, **kwargs)
        except TypeError:
            return original(*args, **kwargs)
        call.apply_defaults()
        request = call.arguments
        module = request.get("module")
        if not isinstance(module, str) or not _deferring(module) or request.get("as_type", "default") != "default":
            return original(*args, **kwargs)
        available = _available(module, request)
        if available is None or (available and _exception_name(request.get("name") or "")):
            return original(*args, **kwargs)
        return DeferredImport(original, args, kwargs, module, request.get("name") or ""), available

    optional_import.__medvision_deferring__ = original
    return optional_import


def _exception_name(name: str) -> bool:
    """Whether ``name`` reads as an exception class: ``except`` takes no stand-in, so it is imported at once."""
    return name.endswith(("Error", "Exception", "Warning", "Exit", "Interrupt"))


def _available(module: str, request: dict) -> bool | None:
    """MONAI's flag for ``module``, found without running it: False when not installed; None where
    the flag cannot be known without importing (then the call is not deferred)."""
    found = _installed(module)
    if found is None:
        return None  # not installed at all: MONAI's own import fails at once, cheaply, with its message
    if not found:
        return False  # the package is, this module of it is not: MONAI's placeholder raises on use
    version = request.get("version")
    if not version:
        return True
    top = module.partition(".")[0]
    try:
        installed = importlib.metadata.version(_DISTRIBUTIONS.get(top, top))
    except importlib.metadata.PackageNotFoundError:
        return None
    stand_in = types.SimpleNamespace(__name__=top, __version__=installed)
    checker, extra = request.get("version_checker"), request.get("version_args")
    try:
        return bool(checker(stand_in, f"{version}", extra) if extra else checker(stand_in, f"{version}"))
    except Exception:  # a checker that needs the module itself
        return None


def _installed(module: str) -> bool | None:
    """Whether ``module`` (dotted) can be found, its packages located but none of them run; None
    when its top-level package is not installed."""
    path = None
    parts = module.split(".")
    for depth in range(len(parts)):
        name = ".".join(parts[: depth + 1])
        if name in sys.modules:
            found = sys.modules[name]
            path = getattr(found, "__path__", None)
        else:
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None:
                return None if depth == 0 else False
            path = spec.submodule_search_locations
        if depth < len(parts) - 1 and path is None:
            return False  # a module where a package was needed
    return True


class DeferredImport:
    """What MONAI's ``optional_import(...)`` returns, imported on first use.

    Attribute reads, calls, use as a base class, ``dir``, copying and pickling all go to the real
    object (the module or the attribute asked for, or MONAI's placeholder that raises
    ``OptionalImportError``), obtained once by calling ``optional_import`` with the same arguments.
    """

    __slots__ = ("_call", "_lock", "_target", "_what")
    _MISSING = object()

    def __init__(self, original, args: tuple, kwargs: dict, module: str, name: str):
        object.__setattr__(self, "_call", (original, args, kwargs))
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_target", DeferredImport._MISSING)
        object.__setattr__(self, "_what", f"{module}.{name}" if name else module)

    def __getattr__(self, name: str):
        return getattr(resolve(self), name)

    def __setattr__(self, name: str, value) -> None:
        setattr(resolve(self), name, value)

    def __call__(self, *args, **kwargs):
        return resolve(self)(*args, **kwargs)

    def __mro_entries__(self, bases):
        return (resolve(self),)

    def __instancecheck__(self, instance) -> bool:  # isinstance(x, stand_in): the real class's answer
        return isinstance(instance, resolve(self))

    def __subclasscheck__(self, subclass) -> bool:
        return issubclass(subclass, resolve(self))

    def __dir__(self):
        return dir(resolve(self))

    def __reduce__(self):  # copies and pickles are of the real object
        return _same, (resolve(self),)

    def __repr__(self) -> str:
        state = "imported" if imported(self) else "not imported yet"
        return f"<deferred import of {object.__getattribute__(self, '_what')} ({state})>"


def imported(stand_in: DeferredImport) -> bool:
    """Whether ``stand_in``'s package was imported (its first use happened)."""
    return object.__getattribute__(stand_in, "_target") is not DeferredImport._MISSING


def resolve(stand_in: DeferredImport) -> Any:
    """The real object ``stand_in`` stands for, imported on the first call."""
    target = object.__getattribute__(stand_in, "_target")
    if target is DeferredImport._MISSING:
        with object.__getattribute__(stand_in, "_lock"):
            target = object.__getattribute__(stand_in, "_target")
            if target is DeferredImport._MISSING:
                target = _real(object.__getattribute__(stand_in, "_call"))
                object.__setattr__(stand_in, "_target", target)
    return target


def _same(target: Any) -> Any:
    return target


def _real(call: tuple) -> Any:
    original, args, kwargs = call
    return original(*args, **kwargs)[0]


def deferred_imports() -> Iterator[DeferredImport]:
    """Every :class:`DeferredImport` bound at module level in an imported MONAI module (for tests
    and diagnostics)."""
    for name, module in list(sys.modules.items()):
        if name.startswith("monai") and isinstance(module, types.ModuleType):
            for value in list(vars(module).values()):
                if isinstance(value, DeferredImport):
                    yield value
