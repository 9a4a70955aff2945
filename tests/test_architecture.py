"""Layering rules: core/ never imports a GUI package; _napari/ never imports Qt.

Checked two ways: statically (every import statement in the source) and at run time
(importing every core module in a fresh interpreter pulls in no GUI module).
"""

import ast
import subprocess
import sys
from pathlib import Path

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
