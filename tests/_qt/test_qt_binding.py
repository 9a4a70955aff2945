"""The Qt binding: tests run on the one conftest chose (PyQt6 where installed) with qtpy and pytest-qt
agreeing, and ``medvision demo`` prefers PyQt6 the way napari does."""

import importlib.util
import os
import subprocess
import sys

import pytest

BINDINGS = {"pyqt6": "PyQt6", "pyqt5": "PyQt5", "pyside6": "PySide6"}


def test_qtpy_and_pytest_qt_use_the_same_binding(qtbot):
    import qtpy
    from pytestqt.qt_compat import qt_api

    assert qtpy.API_NAME == BINDINGS[qt_api.pytest_qt_api]
    assert qtpy.API_NAME == BINDINGS[os.environ["QT_API"].lower()]


def _qt_api_after_prefer(env: dict) -> str:
    code = "import os; from napari_medvision._qt.demo import prefer_qt6; prefer_qt6(); print(os.environ['QT_API'])"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.skipif(importlib.util.find_spec("PyQt6") is None, reason="PyQt6 is not installed")
def test_the_demo_prefers_pyqt6():
    env = {k: v for k, v in os.environ.items() if k != "QT_API"}
    assert _qt_api_after_prefer(env) == "pyqt6"


def test_the_demo_keeps_a_chosen_binding():
    assert _qt_api_after_prefer({**os.environ, "QT_API": "pyqt5"}) == "pyqt5"
