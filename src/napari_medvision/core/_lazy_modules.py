"""Modules whose code runs on first use: packages imported directly (``import matplotlib.pyplot``)
while :func:`.deferred_imports.deferred` is open.

MONAI imports matplotlib's ``pyplot`` with a plain ``import`` (``monai.utils.jupyter_utils``), not
through ``optional_import``, so the stand-ins of :mod:`.deferred_imports` cannot defer it. Here a
meta-path finder, active only while :func:`enable` is on, gives such an import a module that has
its spec, ``__file__`` and ``__path__`` but whose code has not run: :class:`LazyModule`. Its code runs
(parents first, as a normal import runs them) on the first read of any other attribute, or of
``__path__`` once the scope is closed, so a later ``import matplotlib.backends...`` imports in the
usual order. While the scope is open, a package's child modules already imported lazily are
returned without running the package (``import a.b as c`` reads ``a.b``), and everything a lazy
module imports while its code runs is imported as usual.

What differs from importing at once: the module's code runs later, in whichever thread first uses
it (others wait for it); an error in that code is raised there, not at the ``import``.
"""

from __future__ import annotations

import importlib.machinery
import sys
import threading
import types
import weakref

_ALWAYS = frozenset({"__class__", "__name__", "__spec__", "__loader__", "__file__", "__package__", "__cached__"})
_PLAIN = (importlib.machinery.SourceFileLoader, importlib.machinery.SourcelessFileLoader)
_STATE = threading.local()  # .running: how many lazy modules this thread is running the code of
_LOCK = threading.Lock()
_ENABLED: list[tuple[str, ...]] = []


class _Pending:
    __slots__ = ("loader", "lock", "running")

    def __init__(self, loader):
        self.loader, self.lock, self.running = loader, threading.RLock(), False


_PENDING: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def enable(packages: tuple[str, ...]) -> "_Finder":
    """Start deferring direct imports of ``packages`` (and their submodules); returns the token for
    :func:`disable`."""
    finder = _Finder(tuple(packages))
    with _LOCK:
        _ENABLED.append(finder.packages)
        sys.meta_path.insert(0, finder)
    return finder


def disable(finder: "_Finder") -> None:
    with _LOCK:
        _ENABLED.remove(finder.packages)
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)


def _lazy_now() -> bool:
    """Whether imports in this thread are deferred now: a scope is open and no lazy module's code is running."""
    return bool(_ENABLED) and not getattr(_STATE, "running", 0)


def pending(module) -> bool:
    """Whether ``module`` is a :class:`LazyModule` whose code has not run yet."""
    return type(module) is LazyModule and module in _PENDING


class LazyModule(types.ModuleType):
    """A module whose code runs on the first read of an attribute it has not got from its spec."""

    __slots__ = ()

    def __getattribute__(self, attr: str):
        if attr in _ALWAYS:
            return types.ModuleType.__getattribute__(self, attr)
        if _lazy_now():
            if attr == "__path__":
                return types.ModuleType.__getattribute__(self, attr)
            value = types.ModuleType.__getattribute__(self, "__dict__").get(attr)
            if isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{attr}":
                return value  # a child module imported (lazily) meanwhile: ``import a.b as c``
        load(self)
        return types.ModuleType.__getattribute__(self, attr)


def load(module: types.ModuleType) -> None:
    """Run ``module``'s code now (its lazy parent packages' first) if it has not run."""
    state = _PENDING.get(module)
    if state is None:
        return
    with state.lock:
        if _PENDING.get(module) is not state or state.running:
            return  # done meanwhile by another thread, or running in this one (its own reads)
        name = types.ModuleType.__getattribute__(module, "__name__")
        parent = sys.modules.get(name.rpartition(".")[0]) if "." in name else None
        if parent is not None and pending(parent):
            load(parent)
            if _PENDING.get(module) is not state:
                return  # the parent's code used it: it ran then
        state.running = True
        _STATE.running = getattr(_STATE, "running", 0) + 1
        try:
            state.loader.exec_module(module)
        except BaseException:
            if sys.modules.get(name) is module:
                del sys.modules[name]  # as a failed import leaves it
            raise
        finally:
            _STATE.running -= 1
            object.__setattr__(module, "__class__", types.ModuleType)
            _PENDING.pop(module, None)


class _Finder:
    """Finds modules of ``packages`` as the other finders do; gives the plain ones a deferring loader."""

    def __init__(self, packages: tuple[str, ...]):
        self.packages = packages

    def find_spec(self, name: str, path=None, target=None):
        if not _lazy_now() or not any(name == p or name.startswith(p + ".") for p in self.packages):
            return None
        spec = other_spec(name, path, target, self)
        if spec is None:
            return None
        parent = sys.modules.get(name.rpartition(".")[0]) if "." in name else None
        if isinstance(spec.loader, _PLAIN):
            spec.loader = _Deferring(spec.loader)
        elif parent is not None and pending(parent):
            spec.loader = _AfterParent(spec.loader, parent)  # an extension module: its package runs first
        return spec



def other_spec(name: str, path, target, finder):
    """The spec the meta-path finders other than ``finder`` (and other than this module's) give ``name``."""
    for other in sys.meta_path:
        if other is finder or isinstance(other, _Finder) or not hasattr(other, "find_spec"):
            continue
        spec = other.find_spec(name, path, target)
        if spec is not None:
            return spec
    return None


class Delegating:
    """A loader that creates the module as ``loader`` would; subclasses decide how its code runs."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)


class _Deferring(Delegating):
    """Creates the module as its own loader would, and leaves its code to :func:`load`."""

    def exec_module(self, module: types.ModuleType) -> None:
        module.__loader__ = module.__spec__.loader = self.loader
        _PENDING[module] = _Pending(self.loader)
        object.__setattr__(module, "__class__", LazyModule)


class _AfterParent:
    """Runs a module's lazy package first (which may import the module itself), then the module."""

    def __init__(self, loader, parent):
        self.loader, self.parent, self.existing = loader, parent, None

    def create_module(self, spec):
        load(self.parent)
        self.existing = sys.modules.get(spec.name)
        return self.existing if self.existing is not None else self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.loader
        if module is not self.existing:
            self.loader.exec_module(module)
