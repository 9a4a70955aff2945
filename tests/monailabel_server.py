"""A real MONAI Label server (radiology app, spleen model, random weights), one with its auth on, and the
monaibundle app serving our own shipped sample bundle.

MONAI Label needs an environment of its own (scripts/setup_monailabel.sh builds ``.venv-monailabel``;
``MEDVISION_MONAILABEL_VENV`` points elsewhere); without it these tests skip. Auth is MONAI Label's own
(``MONAI_LABEL_AUTH_ENABLE``): it checks RS256 tokens against the public key its realm URL serves, so a
small HTTP server here plays the identity provider's part and the token is signed with its key.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("MEDVISION_MONAILABEL_VENV", ROOT / ".venv-monailabel"))
SERVER_PYTHON = VENV / "bin" / "python"
APP = VENV / "apps" / "radiology"
BUNDLE_APP = VENV / "apps" / "monaibundle"
SAMPLE_BUNDLE = "ct_organs_unet"
#: The radiology app with only its spleen model, random weights, nothing downloaded.
RADIOLOGY_CONF = ["models", "segmentation_spleen", "use_pretrained_model", "false", "sam2", "false",
                  "scribbles", "false"]
#: The monaibundle app serving our shipped sample bundle from its model/ folder; ``zoo_source`` other than
#: "monaihosting" makes it take a bundle folder that is there without asking the model zoo (offline).
BUNDLE_CONF = ["models", SAMPLE_BUNDLE, "zoo_source", "github", "sam2", "false"]
ROLES = ["monailabel-admin", "monailabel-reviewer", "monailabel-annotator", "monailabel-user"]
KEYS_AND_TOKEN = """
import json, time, jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
body = "".join(public.decode().strip().splitlines()[1:-1])
claims = {"preferred_username": "tester", "realm_access": {"roles": %r}, "exp": int(time.time()) + 7200}
print(json.dumps({"public_key": body, "token": jwt.encode(claims, key, algorithm="RS256")}))
""" % ROLES


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _realm(public_key: str) -> ThreadingHTTPServer:
    body = json.dumps({"realm": "medvision-test", "public_key": public_key}).encode()

    class Realm(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Realm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="session")
def monailabel_server(tmp_path_factory):
    """URL of a MONAI Label server started for this test session (no auth, as most sites run it)."""
    with _server(tmp_path_factory.mktemp("monailabel"), auth=False) as (url, _):
        yield url


@pytest.fixture(scope="module")
def monailabel_auth_server(tmp_path_factory):
    """``(url, token)`` of a server with MONAI Label's auth on and a token signed by its realm's key.

    MONAI Label 0.8.5 calls ``jwt.decode`` without ``algorithms``, which PyJWT >= 2 (its own
    requirement) refuses, so it answers 401 to every token: only refusals can be tested against it.
    """
    with _server(tmp_path_factory.mktemp("monailabel_auth"), auth=True) as started:
        yield started


@pytest.fixture(scope="session")
def monaibundle_server(tmp_path_factory):
    """URL of MONAI Label's monaibundle app serving napari-medvision's shipped ``ct_organs_unet`` bundle."""
    import napari_medvision

    bundle = Path(napari_medvision.__file__).parent / "sample_models" / SAMPLE_BUNDLE

    def add_bundle(app: Path) -> None:   # the app serves the bundles in its model/ folder, by folder name
        shutil.copytree(bundle, app / "model" / SAMPLE_BUNDLE)

    app = BUNDLE_APP
    if SERVER_PYTHON.exists() and not (app / "main.py").exists():   # a venv set up before the app was added
        apps = tmp_path_factory.mktemp("apps")
        subprocess.run([str(SERVER_PYTHON), "-m", "monailabel.main", "apps", "--download", "--name", "monaibundle",
                        "--output", str(apps)], capture_output=True, check=False, env={**os.environ, "PYTHONPATH": ""})
        app = apps / "monaibundle"
    with _server(tmp_path_factory.mktemp("monaibundle"), auth=False, app=app, conf=BUNDLE_CONF,
                 prepare=add_bundle) as (url, _):
        yield url


@contextlib.contextmanager
def _server(work: Path, auth: bool, app: Path = APP, conf: list[str] = RADIOLOGY_CONF, prepare=None):
    if not SERVER_PYTHON.exists() or not (app / "main.py").exists():
        pytest.skip(f"no MONAI Label environment with the {app.name} app at {VENV} "
                    "(build it: bash scripts/setup_monailabel.sh)")
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true", "PYTHONPATH": ""}
    env.pop("MEDVISION_SERVER_TOKEN", None)
    realm, token = None, None
    if auth:
        secrets = json.loads(subprocess.run([str(SERVER_PYTHON), "-c", KEYS_AND_TOKEN], capture_output=True,
                                            text=True, check=True).stdout)
        realm, token = _realm(secrets["public_key"]), secrets["token"]
        env.update(MONAI_LABEL_AUTH_ENABLE="true",
                   MONAI_LABEL_AUTH_REALM_URI=f"http://127.0.0.1:{realm.server_address[1]}/realms/test")
    app = shutil.copytree(app, work / "app")     # training writes its checkpoints into the app folder
    if prepare is not None:
        prepare(app)
    (work / "studies").mkdir()
    port = free_port()
    log = open(work / "server.log", "w")
    process = subprocess.Popen([str(SERVER_PYTHON), "-m", "monailabel.main", "start_server", "--app", str(app),
                                "--studies", str(work / "studies"), "--host", "127.0.0.1", "--port", str(port)]
                               + [item for key, value in zip(conf[::2], conf[1::2]) for item in ("--conf", key, value)],
                               cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until_up(process, work / "server.log")
        yield f"http://127.0.0.1:{port}", token
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
        if realm is not None:
            realm.shutdown()


def _wait_until_up(process, log: Path, limit: float = 180.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail("MONAI Label server exited while starting:\n" + log.read_text()[-3000:])
        if "Uvicorn running" in log.read_text():
            return
        time.sleep(0.5)
    pytest.fail(f"MONAI Label server not up after {limit:g} s:\n" + log.read_text()[-3000:])
