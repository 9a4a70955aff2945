"""Fixtures the dock tests share."""

import pytest


@pytest.fixture
def errors(monkeypatch):
    """The error notifications the docks show (each a message), instead of napari's pop-ups."""
    shown = []
    monkeypatch.setattr("napari_medvision._qt.workers.show_error", shown.append)
    return shown
