"""The compute backends: a job in the worker process gives what the same job gives in-process
(arrays and geometry exact), errors come back as themselves, Cancel and a dying worker end the
job without hurting the caller. One worker serves the whole module (its start pays the imports)."""

import numpy as np
import pytest

from napari_medvision.core.backend import (BackendError, InProcessBackend, WorkerBackend, WorkerDiedError, drive)
from napari_medvision.core.backend import remote_errors, transfer
from napari_medvision.core.errors import CancelledError, FourDimensionalError, ModelError
from napari_medvision.core.models import find_model
from napari_medvision.core.phantom import generate_phantom
from tests.conftest import rotation


@pytest.fixture(scope="module")
def worker():
    backend = WorkerBackend()
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def study():
    return generate_phantom(5, shape=(24, 56, 56), spacing=(3.1, 2.7, 4.3), direction=rotation(0.3, -0.2, 0.1)).image


def test_a_sample_model_in_the_worker_equals_the_in_process_run(worker, study):
    model = find_model("ct_organs_unet")
    options = dict(device="cpu", keep_probabilities=True)
    here = drive(InProcessBackend().run_model(model, study, **options))
    seen = []
    there = drive(worker.run_model(model, study, **options), seen.append)
    assert seen and all(hasattr(item, "done") for item in seen)
    np.testing.assert_array_equal(there.labels.array, here.labels.array)
    assert there.labels.array.any()
    assert there.labels.spacing == study.spacing and there.labels.origin == study.origin
    np.testing.assert_array_equal(there.labels.direction, study.direction)
    np.testing.assert_allclose(there.probabilities, here.probabilities, atol=1e-6)
    assert there.volumes_ml == here.volumes_ml and there.label_names == here.label_names
    assert there.labels.array.flags.writeable   # a result layer can be painted on


def test_a_named_core_function_runs_in_the_worker_on_big_arrays(worker):
    rng = np.random.default_rng(3)
    a, b = rng.random((64, 128, 128)) > 0.5, rng.random((64, 128, 128)) > 0.3
    from napari_medvision.core.metrics import dice

    assert drive(worker.run("napari_medvision.core.metrics:dice", a, b)) == dice(a, b)
    with pytest.raises(BackendError, match="not a napari_medvision function"):
        drive(worker.run("os:getcwd"))


def test_a_user_error_comes_back_as_the_same_one_line_error(worker, study):
    model = find_model("ct_organs_unet")
    with pytest.raises(ModelError) as here:
        drive(InProcessBackend().run_model(model, [study, study]))
    with pytest.raises(ModelError) as there:
        drive(worker.run_model(model, [study, study]))
    assert str(there.value) == str(here.value) and "\n" not in str(there.value)


def test_errors_keep_their_class_even_when_they_cannot_be_pickled():
    rebuilt = remote_errors.rebuild(remote_errors.describe(FourDimensionalError("a 4D file: pick a frame", 3)))
    assert type(rebuilt).__name__ in ("FourDimensionalError", "UnreadableFileError")
    assert str(rebuilt) == "a 4D file: pick a frame"
    try:
        try:
            raise ValueError("the real cause")
        except ValueError as cause:
            raise RuntimeError("applying transform Orientationd") from cause
    except RuntimeError as wrapped:
        rebuilt = remote_errors.rebuild(remote_errors.describe(wrapped))
    assert type(rebuilt) is ValueError and str(rebuilt) == "the real cause"


def test_cancel_stops_the_job_between_windows_and_keeps_the_worker(worker):
    model = find_model("ct_organs_unet")
    big = generate_phantom(6, shape=(64, 160, 160)).image
    drive(worker.run("napari_medvision.core.metrics:dice", np.ones(3, bool), np.ones(3, bool)))  # started
    pid = worker.pid
    job = worker.run_model(model, big, device="cpu", tta=True, sw_batch_size=1)
    items = []
    with pytest.raises(CancelledError):
        for item in job:
            items.append(item)
            if len(items) == 3:
                worker.cancel()
    assert 3 <= len(items) < 10   # a full run of 8 flips x many windows yields hundreds
    assert worker.pid == pid and not worker.busy   # stopped between windows: the same warm worker


def test_a_job_closed_by_its_caller_stops_and_the_next_job_runs(worker, study):
    job = worker.run_model(find_model("ct_organs_unet"), generate_phantom(6, shape=(64, 160, 160)).image,
                           device="cpu", tta=True, sw_batch_size=1)
    next(job)
    job.close()
    assert not worker.busy
    result = drive(worker.run_model(find_model("ct_organs_unet"), study, device="cpu"))
    assert result.labels.shape == study.shape


def test_a_killed_worker_fails_the_job_once_and_the_next_job_restarts_it(worker, study):
    import os
    import signal

    job = worker.run_model(find_model("ct_organs_unet"), generate_phantom(6, shape=(64, 160, 160)).image,
                           device="cpu", tta=True, sw_batch_size=1)
    next(job)
    pid = worker.pid
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerDiedError, match="SIGKILL") as died:
        drive(job)
    assert "\n" not in str(died.value)
    assert drive(worker.run_model(find_model("ct_organs_unet"), study, device="cpu")).labels.shape == study.shape
    assert worker.pid != pid


def test_transfer_maps_big_arrays_and_leaves_no_files(tmp_path):
    arrays = {"big": np.arange(200_000, dtype=np.int32).reshape(50, 4000), "small": np.arange(4)}
    packed = transfer.pack(arrays, tmp_path)
    assert len(packed.files) == 1 and len(packed.payload) < 1000   # the big one is not in the pickle
    back = transfer.unpack(packed)
    assert list(tmp_path.iterdir()) == []
    np.testing.assert_array_equal(back["big"], arrays["big"])
    np.testing.assert_array_equal(back["small"], arrays["small"])


def test_a_script_without_a_main_guard_is_not_run_again_by_the_worker(tmp_path):
    """spawn re-runs the parent's main script in the child; a napari script ending in napari.run()
    would then open a second viewer inside the worker."""
    import subprocess
    import sys

    marker = tmp_path / "runs.txt"
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import numpy as np\n"
        f"open({str(marker)!r}, 'a').write('ran\\n')\n"
        "from napari_medvision.core.backend import WorkerBackend, drive\n"
        "backend = WorkerBackend()\n"
        "print(drive(backend.run('napari_medvision.core.metrics:dice', np.ones(4, bool), np.ones(4, bool))))\n"
        "backend.close()\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "1.0" and marker.read_text() == "ran\n"


def _drive_in_thread(job):
    """Drive ``job`` on a thread of its own; the thread and a list that gets its outcome (or exception)."""
    import threading

    import time

    outcome = []

    def run():
        try:
            outcome.append(drive(job, lambda item: outcome.append(item)))
        except BaseException as exc:  # noqa: BLE001 - the test looks at what came
            outcome.append(exc)
        outcome.append(time.monotonic())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _wait_until(condition, seconds=120.0):
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_close_during_a_job_deaf_to_cancel_ends_the_worker_and_its_files(capfd):
    """One long native call (a big random-walker solve) cannot stop at a step: close() cancels,
    waits CANCEL_SECONDS, terminates; the job ends as cancelled, no process or file is left."""
    import signal
    import time

    from napari_medvision.core.backend import CANCEL_SECONDS

    backend = WorkerBackend(warm=("napari_medvision.core.interactive.walker",))
    walk = "napari_medvision.core.interactive.walker:walk_with_prior"
    drive(backend.run(walk, np.zeros((2, 2, 2)), np.array([[[1, 2], [0, 0]], [[0, 0], [0, 0]]], np.uint8),
                      np.full((2, 2, 2), 0.5)))   # the worker is warm
    rng = np.random.default_rng(0)
    data, seeds = rng.random((120, 120, 120)), np.zeros((120, 120, 120), np.uint8)
    seeds[0], seeds[60, 60, 60] = 2, 1
    process, folder = backend._process, backend._folder
    # A tolerance it never reaches keeps the solve in its 400 conjugate-gradient steps (seconds even
    # on a fast quiet machine, where the default tolerance ends it within the test's half second).
    thread, outcome = _drive_in_thread(backend.run(walk, data, seeds, np.full(data.shape, 0.5), gamma=1e-6,
                                                   tol=1e-30))
    _wait_until(lambda: backend.busy)
    time.sleep(0.5)   # the worker is inside the solve
    start = time.monotonic()
    backend.close()
    took = time.monotonic() - start
    thread.join(10)
    assert not thread.is_alive() and len(outcome) == 2 and isinstance(outcome[0], CancelledError)
    assert CANCEL_SECONDS <= took < CANCEL_SECONDS + 5
    assert not process.is_alive() and process.exitcode == -signal.SIGTERM
    assert not folder.exists() and backend.pid is None and not backend.busy
    assert "Traceback" not in capfd.readouterr().err


def test_close_during_a_job_stops_it_at_its_next_step_and_ends_the_worker(worker, capfd):
    import time

    from napari_medvision.core.backend import CANCEL_SECONDS

    job = worker.run_model(find_model("ct_organs_unet"), generate_phantom(6, shape=(64, 160, 160)).image,
                           device="cpu", tta=True, sw_batch_size=1, overlap=0.75)   # many windows: seconds
    thread, outcome = _drive_in_thread(job)
    _wait_until(lambda: len(outcome) >= 2, 300)   # two sliding-window steps came
    process, folder = worker._process, worker._folder
    start = time.monotonic()
    worker.close()
    thread.join(10)
    assert not thread.is_alive() and isinstance(outcome[-2], CancelledError)
    assert outcome[-1] - start < CANCEL_SECONDS   # stopped at its next step, not by the terminate after
    assert not process.is_alive() and not folder.exists() and worker.pid is None
    assert "Traceback" not in capfd.readouterr().err


def test_a_shared_array_is_written_once_and_read_only_on_the_other_side(tmp_path):
    image = np.arange(64 * 64 * 64, dtype=np.float32).reshape(64, 64, 64)
    shared = transfer.Shared(image)
    first = transfer.pack((shared, 1), tmp_path)
    written = sorted(tmp_path.iterdir())
    second = transfer.pack((transfer.Shared(image), 2), tmp_path)
    assert not first.files and not second.files and len(written) == 1   # one file, kept, named in the pickle
    assert sorted(tmp_path.iterdir()) == written
    back, number = transfer.unpack(second)
    np.testing.assert_array_equal(back, image)
    assert number == 2 and not back.flags.writeable
    others = [np.full((32, 32, 32), k, np.int16) for k in range(transfer.SHARED_KEPT + 2)]
    for other in others:
        transfer.pack(transfer.Shared(other), tmp_path)
    assert len(list(tmp_path.iterdir())) == transfer.SHARED_KEPT   # the oldest went
    np.testing.assert_array_equal(back, image)   # a map made before stays valid
    transfer.remove_folder(tmp_path)
    assert not tmp_path.exists()


def _long_slices_available() -> bool:
    import threading

    from napari_medvision.core.priority import request_long_slices, thread_scheduling

    if thread_scheduling()["slice_ns"] is None:
        return False
    outcome = []
    probe = threading.Thread(target=lambda: outcome.append(request_long_slices()))   # a thread that ends
    probe.start()
    probe.join()
    return outcome == [True]


@pytest.mark.skipif(not _long_slices_available(), reason="the kernel neither shows nor takes a task's time slice")
def test_the_worker_computes_below_the_viewer_with_long_slices_and_the_viewer_keeps_its_own(worker):
    import os

    from napari_medvision.core.priority import NICE, WORKER_SLICE_MS, thread_scheduling

    there = drive(worker.run("napari_medvision.core.priority:thread_scheduling"))
    here = thread_scheduling()
    assert there["nice"] == min(os.nice(0) + NICE, 19)
    assert there["slice_ns"] == WORKER_SLICE_MS * 1_000_000
    assert here["slice_ns"] != there["slice_ns"]
