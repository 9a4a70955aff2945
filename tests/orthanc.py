"""A real PACS for the tests: Orthanc with its DICOMweb plugin, started as a plain process.

The Debian service does not start in containers, so each fixture writes its own ``config.json``
(free loopback ports for HTTP and DICOM, a temporary storage folder, with or without basic auth),
runs ``Orthanc config.json`` and stops it by its PID, waiting for the exit before the storage
folder is removed. Tests skip, saying why, where Orthanc or the plugin is not installed
(``scripts/setup_pacs.sh`` installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

PLUGIN_CANDIDATES = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/libOrthancDicomWeb.so.1.7",
                     "/usr/lib/orthanc/libOrthancDicomWeb.so")
USER, PASSWORD = "radiologist", "correct-horse-battery"


@dataclass
class OrthancServer:
    """A running Orthanc: ``url`` is its DICOMweb root."""

    process: subprocess.Popen
    http_port: int
    storage: Path
    auth: tuple[str, str] | None
    log: object = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    def rest(self, path: str):
        """Orthanc's own REST API (for checks the DICOMweb API does not offer)."""
        response = requests.get(f"http://127.0.0.1:{self.http_port}{path}", auth=self.auth, timeout=10)
        response.raise_for_status()
        return response.json()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _binary_and_plugin() -> tuple[str, str]:
    binary = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if os.path.exists("/usr/sbin/Orthanc") else None)
    if binary is None:
        pytest.skip("Orthanc is not installed (Debian: orthanc orthanc-dicomweb; scripts/setup_pacs.sh)")
    plugin = os.environ.get("MEDVISION_ORTHANC_DICOMWEB") or next(
        (p for p in PLUGIN_CANDIDATES if os.path.exists(p)), None)
    if plugin is None:
        pytest.skip("Orthanc's DICOMweb plugin is not installed (Debian: orthanc-dicomweb)")
    return binary, plugin


def start_orthanc(folder: Path, with_auth: bool) -> OrthancServer:
    """Start Orthanc with its storage under ``folder``; returns once its HTTP API answers."""
    binary, plugin = _binary_and_plugin()
    storage = folder / "storage"
    storage.mkdir(parents=True)
    http_port, dicom_port = _free_port(), _free_port()
    config = {
        "Name": "medvision-test", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
        "HttpPort": http_port, "DicomPort": dicom_port, "DicomServerEnabled": True, "DicomAet": "MVTEST",
        "RemoteAccessAllowed": False, "AuthenticationEnabled": with_auth,
        "RegisteredUsers": {USER: PASSWORD} if with_auth else {},
        "Plugins": [plugin], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "HttpDescribeErrors": True, "StorageCompression": False,
    }
    (folder / "config.json").write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "wb")  # noqa: SIM115 - closed in stop_orthanc
    process = subprocess.Popen([binary, "config.json"], cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    server = OrthancServer(process, http_port, storage, (USER, PASSWORD) if with_auth else None, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.close()
            tail = (folder / "orthanc.log").read_text(errors="replace")[-1500:]
            pytest.fail(f"Orthanc exited with {process.returncode} at start-up:\n{tail}")
        try:
            requests.get(f"http://127.0.0.1:{http_port}/system", auth=server.auth, timeout=1).raise_for_status()
            return server
        except requests.RequestException:
            time.sleep(0.1)
    stop_orthanc(server)
    pytest.fail("Orthanc did not answer within 30 s")


def stop_orthanc(server: OrthancServer) -> None:
    """Stop by PID and wait for the exit (its storage may be reused or removed only then)."""
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)
    server.log.close()


@pytest.fixture
def orthanc(tmp_path):
    """Orthanc without authentication."""
    server = start_orthanc(tmp_path / "orthanc", with_auth=False)
    yield server
    stop_orthanc(server)


@pytest.fixture
def orthanc_auth(tmp_path):
    """Orthanc requiring HTTP basic auth (:data:`USER` / :data:`PASSWORD`)."""
    server = start_orthanc(tmp_path / "orthanc-auth", with_auth=True)
    yield server
    stop_orthanc(server)
