"""Whole processes timed and their memory watched: wall seconds and the peak RSS of the process tree."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
_POLL_S = 0.02


@dataclass
class Run:
    """One finished process: wall seconds, CPU seconds (user + system, its whole tree), peak RSS (MB)
    of it and its children summed, its output."""

    seconds: float
    cpu_s: float
    peak_mb: float
    stdout: str
    stderr: str


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of ``process`` and all its descendants (0 for those already gone)."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


class PeakWatcher(threading.Thread):
    """Samples the RSS of a process tree every few milliseconds; ``peak`` is the highest seen (bytes)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, tree_rss(self.process))
            except psutil.NoSuchProcess:
                return
            self.stop.wait(_POLL_S)


def run(command: list[str], nice: int = 10, env: dict | None = None, timeout: float = 3600) -> Run:
    """Run ``command`` (at ``nice`` priority) to its end; raises ``RuntimeError`` with its stderr if it fails."""
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(["nice", "-n", str(nice), *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, **(env or {})})
    _first_to_go(process.pid)
    watcher = PeakWatcher(process.pid)
    watcher.start()
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        watcher.stop.set()
        watcher.join()
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if process.returncode in (-9, 137):
        raise MemoryError(f"{' '.join(command[:4])}... was killed (out of memory?)", watcher.peak / 2**20, seconds)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])}... failed ({process.returncode}): {stderr.strip()[-800:]}")
    return Run(seconds, cpu_s, watcher.peak / 2**20, stdout, stderr)


def _first_to_go(pid: int) -> None:
    """Make the benchmarked process the kernel's first choice if memory runs out (MONAI's runner
    resamples every class to the image's grid): it, not another program on a shared machine, is killed."""
    try:
        Path(f"/proc/{pid}/oom_score_adj").write_text("1000")
    except OSError:
        pass


def medvision(args: list[str]) -> list[str]:
    """The ``medvision`` console script's command line for this source tree."""
    return [sys.executable, "-c", "import sys; from napari_medvision.cli import main; sys.exit(main())", *args]


def medvision_env() -> dict:
    """This source tree first on the path, its modules byte-compiled as an installed package's are
    (a run with ``PYTHONDONTWRITEBYTECODE`` would otherwise compile every module of ours each time,
    while MONAI's come compiled)."""
    import compileall

    compileall.compile_dir(str(ROOT / "src" / "napari_medvision"), quiet=1)
    return {"PYTHONPATH": str(ROOT / "src")}


def monai_runner(bundle: Path, image: Path, output_dir: Path) -> list[str]:
    """MONAI's own bundle runner on one image, the bundle's configs otherwise as written."""
    return [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "inference.json"),
            "--bundle_root", str(bundle), "--datalist", repr([str(image)]), "--output_dir", str(output_dir)]


def runner_env(deps: Path | None) -> dict:
    """The environment MONAI's runner needs: it runs through ``fire`` and ignite's engines, which
    napari-medvision does not install; ``deps`` is a folder they were installed into
    (``pip install --no-deps --target DIR pytorch-ignite fire termcolor``)."""
    import importlib.util

    if all(importlib.util.find_spec(name) for name in ("ignite", "fire")):
        return {}
    if deps is not None and (deps / "ignite").is_dir() and (deps / "fire").is_dir():
        return {"PYTHONPATH": str(deps)}
    raise SystemExit("MONAI's bundle runner needs pytorch-ignite and fire: run\n"
                     "  pip install --no-deps --target DIR pytorch-ignite fire termcolor\n"
                     "and pass --runner-deps DIR (kept out of the environment medvision runs in)")
