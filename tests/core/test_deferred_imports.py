"""MONAI's optional packages imported on first use (core/deferred_imports.py)."""

from __future__ import annotations

import copy
import importlib
import json
import pickle
import subprocess
import sys
import types
import uuid

import pytest

from napari_medvision.core import deferred_imports
from napari_medvision.core.deferred_imports import DeferredImport, deferred, imported, resolve


def _optional_import():
    """MONAI's own ``optional_import`` (unwrapped where a deferred import of MONAI wrapped it) and a
    wrapped copy that defers."""
    from monai.utils import module

    original = getattr(module.optional_import, "__medvision_deferring__", module.optional_import)
    return original, deferred_imports._wrap(original)


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A package of a fresh name on ``sys.path`` whose import leaves a mark in ``sys.modules``."""
    name = f"medv_probe_{uuid.uuid4().hex[:8]}"
    package = tmp_path / name
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text(
        "VALUE = 42\n\ndef double(x):\n    return 2 * x\n\nclass Base:\n    tag = 'base'\n\n"
        "class ProbeError(Exception):\n    pass\n")
    (package / "sub" / "__init__.py").write_text("def triple(x):\n    return 3 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


def test_a_deferred_package_is_imported_on_first_attribute_use(probe):
    _, optional_import = _optional_import()
    with deferred((probe,)):
        module, available = optional_import(probe)
        function, has_function = optional_import(probe, name="double")
        sub, has_sub = optional_import(f"{probe}.sub")
    assert isinstance(module, DeferredImport) and available and has_function and has_sub
    assert probe not in sys.modules and not imported(module)
    assert module.VALUE == 42  # the first use imports it
    assert probe in sys.modules and imported(module) and resolve(module) is sys.modules[probe]
    assert function(5) == 10 and resolve(function) is sys.modules[probe].double
    assert f"{probe}.sub" not in sys.modules
    assert sub.triple(2) == 6 and f"{probe}.sub" in sys.modules


def test_outside_the_scope_or_for_other_packages_imports_at_once(probe):
    _, optional_import = _optional_import()
    module, available = optional_import(probe)
    assert available and not isinstance(module, DeferredImport) and module.VALUE == 42
    with deferred(("some_other_package",)):
        again, _ = optional_import(probe)
    assert again is module


def test_missing_packages_and_modules_give_monais_flags_and_errors(probe):
    from monai.utils import OptionalImportError

    original, optional_import = _optional_import()
    with deferred((probe, "medv_not_installed")):
        absent, has_absent = optional_import("medv_not_installed")
        no_sub, has_no_sub = optional_import(f"{probe}.no_such_module")
    assert not has_absent and not has_no_sub
    assert not isinstance(absent, DeferredImport)  # not installed at all: MONAI's own placeholder at once
    assert probe not in sys.modules  # a module missing from an installed package is found missing unimported
    with pytest.raises(OptionalImportError):
        no_sub.anything
    assert original(f"{probe}.no_such_module")[1] == has_no_sub


def test_versions_are_checked_from_the_installed_distribution():
    import numpy

    original, optional_import = _optional_import()
    with deferred(("numpy",)):
        old_enough, ok = optional_import("numpy", "1.0")
        too_new, too_new_ok = optional_import("numpy", "999.0")
    assert isinstance(old_enough, DeferredImport) and ok and not too_new_ok
    assert (ok, too_new_ok) == (original("numpy", "1.0")[1], original("numpy", "999.0")[1])
    assert resolve(old_enough) is numpy


def test_a_version_asked_of_a_package_without_a_distribution_imports_at_once(probe):
    _, optional_import = _optional_import()
    with deferred((probe,)):
        module, available = optional_import(probe, "1.0")
    assert available and not isinstance(module, DeferredImport) and probe in sys.modules


def test_stand_ins_work_as_base_classes_copies_and_pickles(probe):
    _, optional_import = _optional_import()
    with deferred((probe,)):
        base, _ = optional_import(probe, name="Base")
        function, _ = optional_import(probe, name="double")
        module, _ = optional_import(probe)

    class Child(base):
        pass

    assert Child.tag == "base" and Child.__mro__[1] is sys.modules[probe].Base
    assert copy.deepcopy(function) is sys.modules[probe].double
    assert pickle.loads(pickle.dumps(base)) is sys.modules[probe].Base
    assert "double" in dir(module) and "medv_probe" in repr(module)
    assert isinstance(Child(), base) and issubclass(Child, base) and not isinstance(3, base)


def test_exception_classes_are_imported_at_once(probe):
    """``except`` takes classes only: a name that reads as an exception class is not deferred."""
    _, optional_import = _optional_import()
    with deferred((probe,)):
        error, available = optional_import(probe, name="ProbeError")
    assert available and not isinstance(error, DeferredImport)
    try:
        raise sys.modules[probe].ProbeError("raised")
    except error as caught:  # a stand-in here: TypeError (catching classes that do not inherit from BaseException)
        assert str(caught) == "raised"


HEAVY = ("torchvision", "pandas", "sklearn", "skimage", "huggingface_hub", "scipy.signal", "scipy.ndimage",
         "matplotlib")
_IMPORT_MONAI = f"""
import json, sys
from napari_medvision.core.deferred_imports import deferred, deferred_imports, imported
from napari_medvision.core._lazy_modules import pending
with deferred():
    import monai
    from monai.bundle import ConfigParser
before = [name for name in {HEAVY!r} if name in sys.modules and not pending(sys.modules[name])]
stand_ins = list(deferred_imports())
config = {{"net": {{"_target_": "TorchVisionFCModel", "model_name": "resnet18", "num_classes": 3,
                  "pretrained": False}}}}
import torch
network = ConfigParser(config).get_parsed_content("net").eval()
out = network(torch.zeros(1, 3, 224, 224))
import monai.utils.profiling as profiling
import monai.utils.jupyter_utils as jupyter
import matplotlib
matplotlib.use("Agg")
figure = jupyter.plt.figure()
frame = profiling.pd.DataFrame({{"a": [1, 2]}})
print(json.dumps({{"before": before, "stand_ins": len(stand_ins), "shape": list(out.shape),
                  "torchvision": "torchvision" in sys.modules, "pandas_rows": len(frame),
                  "has_pandas": profiling.has_pandas, "figure": type(figure).__name__,
                  "resolved": sum(imported(s) for s in stand_ins)}}))
"""


def test_import_monai_defers_its_optional_packages_and_a_bundle_using_one_still_builds():
    """In a fresh interpreter: ``import monai`` inside :func:`deferred` imports none of the heavy
    optional packages; a bundle whose network is torchvision's (MONAI's TorchVisionFCModel) builds
    and runs, importing torchvision then; pandas comes on first use."""
    pytest.importorskip("torchvision")
    pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    done = subprocess.run([sys.executable, "-c", _IMPORT_MONAI], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["before"] == [] and record["stand_ins"] >= 20
    assert record["shape"] == [1, 3] and record["torchvision"]
    assert record["pandas_rows"] == 2 and record["has_pandas"] is True and record["figure"] == "Figure"
    assert 1 <= record["resolved"] < record["stand_ins"]


@pytest.fixture
def lazy_probe(tmp_path, monkeypatch):
    """A package whose modules append their names to ``order.txt`` when their code runs."""
    name = f"medv_lazy_{uuid.uuid4().hex[:8]}"
    order = tmp_path / "order.txt"
    mark = f"open({str(order)!r}, 'a').write(__name__ + '\\n')\n"
    package = tmp_path / name
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text(mark + "import json\nVALUE = 42\n")
    (package / "sub" / "__init__.py").write_text(mark + "from .. import VALUE\nDOUBLE = 2 * VALUE\n")
    (package / "broken.py").write_text(mark + "raise RuntimeError('broken on purpose')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, order
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


def _ran(order) -> list[str]:
    return order.read_text().split() if order.exists() else []


def test_a_lazy_module_runs_on_first_use_parents_first(lazy_probe):
    from napari_medvision.core import _lazy_modules

    name, order = lazy_probe
    token = _lazy_modules.enable((name,))
    try:
        sub = importlib.import_module(f"{name}.sub")
        top = sys.modules[name]
        assert _ran(order) == [] and _lazy_modules.pending(top) and _lazy_modules.pending(sub)
        assert getattr(top, "sub") is sub and top.__path__  # read without running, while enabled
        assert _ran(order) == []
    finally:
        _lazy_modules.disable(token)
    assert sub.DOUBLE == 84  # the first use runs the package, then the module
    assert _ran(order) == [name, f"{name}.sub"]
    assert type(top) is type(sub) is types.ModuleType and top.json is sys.modules["json"]


def test_a_lazy_package_runs_before_a_later_import_of_its_modules(lazy_probe):
    from napari_medvision.core import _lazy_modules

    name, order = lazy_probe
    token = _lazy_modules.enable((name,))
    try:
        top = importlib.import_module(name)
    finally:
        _lazy_modules.disable(token)
    assert _ran(order) == []
    sub = importlib.import_module(f"{name}.sub")  # after the scope: an ordinary import, package first
    assert _ran(order) == [name, f"{name}.sub"] and sub.DOUBLE == 84 and not _lazy_modules.pending(top)


def test_a_lazy_module_that_fails_raises_on_first_use(lazy_probe):
    from napari_medvision.core import _lazy_modules

    name, order = lazy_probe
    token = _lazy_modules.enable((name,))
    try:
        broken = importlib.import_module(f"{name}.broken")
    finally:
        _lazy_modules.disable(token)
    with pytest.raises(RuntimeError, match="broken on purpose"):
        broken.anything
    assert f"{name}.broken" not in sys.modules and _ran(order) == [name, f"{name}.broken"]
