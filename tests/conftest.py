"""Shared fixtures: reference data, synthetic volumes and DICOM series made in the test."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

# Qt binding: PyQt6 (the test extra's, napari's default) unless the caller chose one with QT_API.
# Set before pytest-qt picks its binding (at configure) and before anything imports qtpy, so both
# agree even where PyQt5 is installed too (qtpy alone would take PyQt5 first).
if importlib.util.find_spec("PyQt6") is not None:
    os.environ.setdefault("QT_API", "pyqt6")
if "QT_API" in os.environ:
    os.environ.setdefault("PYTEST_QT_API", os.environ["QT_API"])

# The MONAI Label servers (session-wide: the core and the dock tests share one of each; they skip without
# .venv-monailabel).
from tests.monailabel_server import monaibundle_server, monailabel_auth_server, monailabel_server  # noqa: E402,F401

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _own_trust_store(tmp_path_factory, monkeypatch):
    """Trust remembered by a test goes to a file of its own, never to the user's settings folder."""
    monkeypatch.setenv("MEDVISION_TRUST_FILE", str(tmp_path_factory.mktemp("trust") / "trusted_bundles.json"))
    if "MEDVISION_CACHE" not in os.environ:  # nor does a test's cache (trust verdicts, extracted archives)
        monkeypatch.setenv("MEDVISION_CACHE", str(tmp_path_factory.getbasetemp() / "medvision-cache"))


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the repository; skips when a fresh clone has none."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA} (only present beside the project's own checkout)")
    return SHARED_DATA


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """A proper rotation from three angles in radians (an oblique direction matrix)."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


GEOMETRIES = {
    "anisotropic": dict(spacing=(0.7, 0.9, 5.0), origin=(-120.5, 33.25, 7.0), direction=np.eye(3)),
    "flipped_ras": dict(spacing=(1.2, 1.2, 3.0), origin=(100.0, 80.0, -40.0), direction=np.diag([-1.0, -1.0, 1.0])),
    "flipped_y": dict(spacing=(0.78125, 0.78125, 6.5), origin=(-99.6, 99.6, -78.0), direction=np.diag([1.0, -1.0, 1.0])),
    "oblique": dict(spacing=(0.8, 1.1, 2.5), origin=(12.5, -30.0, 55.0), direction=rotation(0.3, -0.2, 0.5)),
}


def make_image(shape=(6, 9, 11), geometry="anisotropic", dtype=np.int16, seed=0) -> sitk.Image:
    """A SimpleITK image with random values and one of :data:`GEOMETRIES`."""
    rng = np.random.default_rng(seed)
    array = rng.integers(-1000, 1500, size=shape).astype(dtype)
    image = sitk.GetImageFromArray(array)
    geo = GEOMETRIES[geometry]
    image.SetSpacing(geo["spacing"])
    image.SetOrigin(geo["origin"])
    image.SetDirection([float(v) for v in np.asarray(geo["direction"]).ravel()])
    return image


def write_dicom_series(folder: Path, hu: np.ndarray, *, spacing=(0.7, 0.7), z_positions=None,
                       series_uid="1.2.826.0.1.3680043.2.1125.7.1", description="Chest CT",
                       modality="CT", file_names=None) -> list[Path]:
    """Write ``hu`` (z, y, x) as one DICOM file per slice; GDCM stores HU + 1024 with intercept -1024.

    ``file_names`` (default ``slice_000.dcm``...) lets a test scramble the name order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    z_positions = z_positions if z_positions is not None else [2.5 * k for k in range(hu.shape[0])]
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    paths = []
    for k, z in enumerate(z_positions):
        image = sitk.GetImageFromArray(hu[k].astype(np.int16))
        image.SetSpacing(spacing)
        tags = {
            "0008|0060": modality, "0020|000e": series_uid, "0020|000d": "1.2.826.0.1.3680043.2.1125.7",
            "0008|103e": description, "0020|0032": f"-100\\-120\\{z}", "0020|0037": "1\\0\\0\\0\\1\\0",
            "0020|0013": str(k + 1), "0028|1052": "-1024", "0028|1053": "1",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0008|0018": f"{series_uid}.{k + 1}",
        }
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        path = folder / (file_names[k] if file_names else f"slice_{k:03d}.dcm")
        writer.SetFileName(str(path))
        writer.Execute(image)
        paths.append(path)
    return paths


def drain(generator):
    """Run an engine / training generator to its end: ``(yielded steps, returned value)``."""
    steps = []
    while True:
        try:
            steps.append(next(generator))
        except StopIteration as stop:
            return steps, stop.value
