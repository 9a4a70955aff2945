"""Layering rules: core/ never imports a GUI package; _napari/ never imports Qt; no import cycles;
core/ never uses the sample recipes; the light commands (``--help``, ``info``, ``models``) load no
torch, MONAI or napari.

Checked statically (every import statement in the source) and at run time (a fresh interpreter
importing every core module, or running a command, and listing what it loaded).
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_medvision"
GUI = {"napari", "qtpy", "magicgui", "superqt", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy"}
QT = GUI - {"napari", "magicgui", "vispy"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("folder, forbidden", [("core", GUI), ("_napari", QT)])
def test_layer_imports(folder, forbidden):
    offenders = {str(p.relative_to(PACKAGE)): sorted(imported_roots(p) & forbidden)
                 for p in (PACKAGE / folder).rglob("*.py") if imported_roots(p) & forbidden}
    assert not offenders


def test_importing_core_loads_no_gui_module():
    modules = sorted(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)
                     for p in (PACKAGE / "core").rglob("*.py"))
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(GUI)!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_every_manifest_python_name_imports():
    import importlib

    manifest = yaml.safe_load((PACKAGE / "napari.yaml").read_text())
    for command in manifest["contributions"]["commands"]:
        module, _, attribute = command["python_name"].partition(":")
        assert callable(getattr(importlib.import_module(module), attribute)), command["id"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _our_imports(path: Path, modules: set[str]) -> set[str]:
    """Our modules that ``path`` imports anywhere (function-level imports too): ``from a import b``
    counts as importing ``a.b`` when that is a module, else ``a``."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                found.update({f"{target}.{alias.name}"} & modules or {target} & modules)
    return found - {name}


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _our_imports(path, set(paths)) for name, path in paths.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    index, low, stack, cycles = {}, {}, [], []

    def visit(module):
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = stack[stack.index(module):]
            del stack[stack.index(module):]
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return cycles


def test_import_cycles_are_found():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_our_modules():
    assert import_cycles(import_graph()) == []


def test_core_does_not_use_the_sample_recipes():
    offenders = {module: sorted(m for m in imports if m.startswith("napari_medvision.samples"))
                 for module, imports in import_graph().items() if module.startswith("napari_medvision.core")}
    assert not {k: v for k, v in offenders.items() if v}


HEAVY = {"torch", "monai", "napari", "qtpy", "PyQt5", "PyQt6", "vispy"}
_PROBE = """
import json, sys
preload, argv = sys.argv[1], sys.argv[2:]
if preload:
    __import__(preload)
from napari_medvision.cli import main
try:
    code = main(argv)
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "heavy": sorted({m.split(".")[0] for m in sys.modules} & %r)}))
""" % HEAVY


def loaded_by(argv: list[str], preload: str = "") -> dict:
    """Exit status of ``medvision ARGV`` in a fresh interpreter and the heavy packages loaded by its end."""
    result = subprocess.run([sys.executable, "-c", _PROBE, preload, *argv], capture_output=True, text=True,
                            check=True, timeout=300)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def nifti(tmp_path) -> Path:
    import SimpleITK as sitk

    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16)), str(path))
    return path


@pytest.mark.parametrize("argv", [["--help"], ["info", "NIFTI"], ["info", "NIFTI", "--json"]])
def test_light_commands_import_no_torch_monai_or_napari(argv, nifti):
    assert loaded_by([str(nifti) if a == "NIFTI" else a for a in argv]) == {"code": 0, "heavy": []}


@pytest.mark.parametrize("argv", [["models"], ["models", "--json"]])
def test_models_listing_imports_no_gui(argv, tmp_path, monkeypatch):
    """The first ``models`` judges each bundle's trust with MONAI's own config parser (so MONAI and torch
    load, never napari or Qt); the next one finds the verdicts remembered and loads none of them."""
    monkeypatch.setenv("MEDVISION_CACHE", str(tmp_path / "cache"))
    first = loaded_by(argv)
    assert first["code"] == 0
    assert "monai" in first["heavy"] and not set(first["heavy"]) & {"napari", "qtpy", "PyQt5", "PyQt6", "vispy"}
    assert loaded_by(argv) == {"code": 0, "heavy": []}


def test_the_probe_sees_a_heavy_import(nifti):
    assert loaded_by(["info", str(nifti)], preload="napari_medvision.core.models.cache")["heavy"] == ["torch"]
