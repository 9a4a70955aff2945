"""The plugin is a good guest in napari: nothing process-wide it changes outlives its own call.

Importing it (the package, its napari and Qt modules, every ``python_name`` of the manifest) and
warming it up leaves ``sys.modules["triton"]``, the umask and the garbage collector as they were,
and its background compute lowers the priority of threads it starts, not of the caller's.
"""

import importlib.util
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import napari_medvision
from napari_medvision.core._atomic import current_umask, write_json_atomic
from napari_medvision.core.priority import on_own_thread
from tests.conftest import drain

MANIFEST = Path(napari_medvision.__file__).with_name("napari.yaml")

PROBE = r"""
import gc, json, os, sys
import yaml

umask_calls = []
real_umask = os.umask
os.umask = lambda mask: umask_calls.append(mask) or real_umask(mask)

def state():
    return {"triton": "absent" if "triton" not in sys.modules else repr(sys.modules["triton"] is None),
            "gc_enabled": gc.isenabled(), "gc_frozen": gc.get_freeze_count(), "gc_threshold": gc.get_threshold(),
            "umask": open("/proc/self/status").read().split("Umask:")[1].split()[0]}

before = state()
import importlib
for name in ("napari_medvision", "napari_medvision._napari", "napari_medvision._qt",
             "napari_medvision._qt.workers"):
    importlib.import_module(name)
for entry in yaml.safe_load(open(sys.argv[1]))["contributions"]["commands"]:
    module, _, attribute = entry["python_name"].partition(":")
    getattr(importlib.import_module(module), attribute)
from napari_medvision._qt.workers import _warm_up
_warm_up()          # what a dock runs in the background when it opens
from napari_medvision.core._atomic import write_json_atomic
write_json_atomic(sys.argv[2], {"written": True})
print(json.dumps({"before": before, "after": state(), "umask_calls": umask_calls}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the umask from /proc/self/status")
def test_importing_and_warming_up_the_plugin_changes_nothing_process_wide(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, "-c", PROBE, str(MANIFEST), str(tmp_path / "out.json")],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["after"] == report["before"]
    assert report["before"]["triton"] == "absent"   # so the check above means "still not imported"
    assert report["umask_calls"] == []              # not even set back and forth for an instant


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed here")
def test_triton_stays_importable_after_the_qt_package_is_imported():
    """Other plugins and user code (``torch.compile``) may use triton in the same session."""
    code = ("import sys; import napari_medvision._qt; absent = 'triton' not in sys.modules; "
            "import triton; print(absent, triton.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["True", "triton"]


def test_atomic_writes_keep_the_umask_and_follow_it(tmp_path, monkeypatch):
    old = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda mask: pytest.fail("the umask was set"))
        assert current_umask() == 0o027
        write_json_atomic(tmp_path / "a.json", {"a": 1})
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is a Linux feature")
def test_engine_steps_run_lower_on_a_thread_of_their_own_and_the_caller_keeps_its_priority():
    def priority():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    seen = []

    def engine():
        seen.append((threading.get_native_id(), priority()))
        yield "step"
        seen.append((threading.get_native_id(), priority()))
        return "done"

    caller = {}

    def body():   # stands for napari's pooled worker thread
        caller["tid"], caller["before"] = threading.get_native_id(), priority()
        caller["run"] = drain(on_own_thread(engine()))
        caller["after"] = priority()

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert caller["run"] == (["step"], "done")
    assert caller["after"] == caller["before"]
    assert len(seen) == 2 and all(tid != caller["tid"] for tid, _ in seen)
    assert all(p > caller["before"] or p == 19 for _, p in seen)
