"""Many studies in one process: every study of a folder through one model, resumable and shardable.

A folder's studies are its image files and its DICOM series folders (sorted by name). Each study's
result is written atomically to ``OUT_DIR/<study>.<ext>``, then a small record of it to
``OUT_DIR/.medvision-batch/<study>.json``; ``OUT_DIR/summary.json`` is rebuilt from every record
after each study, under a lock, so several shards writing one folder never lose each other's lines.

* Resume: a study whose record says ``done`` and whose output exists is skipped, so a re-run after a
  crash, a kill or Ctrl-C finishes the rest; a failed study is tried again.
* Shards: ``--shard K/N`` keeps the studies whose name hashes to ``K-1`` modulo ``N`` (a hash of the
  name, not the position, so a study stays in its shard when others are added or removed).
* Speed: the model is built once (the model cache); the next study is read on a thread while the
  current one computes, and each result is written on another.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Generator

from .._atomic import write_json_atomic
from ..errors import MedvisionError
from .progress import Progress

log = logging.getLogger(__name__)

RECORDS = ".medvision-batch"
SUMMARY = "summary.json"


@dataclass(frozen=True)
class Study:
    """One input of a batch: ``name`` (unique in its folder, used for the output) and its ``path``."""

    name: str
    path: Path


@dataclass
class BatchReport:
    """What one batch run did: study name -> record, for the studies of this run's shard.

    A record has ``status`` (``done``, ``failed`` or ``skipped``: done by an earlier run), ``seconds``,
    ``output`` and, for segmentation, ``volumes_ml``; a failed one has ``error``.
    """

    studies: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(record["status"] == status for record in self.studies.values())

    def summary(self) -> dict:
        return {"done": self.count("done"), "skipped": self.count("skipped"), "failed": self.count("failed"),
                "seconds": round(self.seconds, 3), "studies": self.studies}


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``1 <= K <= N``.

    Raises:
        MedvisionError: anything else, saying what a shard looks like.
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise MedvisionError(f"--shard '{text}' is not K/N: give e.g. --shard 1/4 (the first of 4 shards)")
    k, n = int(match[1]), int(match[2])
    if n < 1 or not 1 <= k <= n:
        raise MedvisionError(f"--shard {k}/{n}: K must be between 1 and N (shards are numbered 1/{max(n, 1)} "
                             f"to {max(n, 1)}/{max(n, 1)})")
    return k, n


def find_studies(folder: str | Path) -> list[Study]:
    """The studies in ``folder``: image files and DICOM series folders, sorted by name.

    A study's name is the file name without its image ending (``ct_01.nii.gz`` -> ``ct_01``) or the
    folder's name. Hidden entries and our own outputs' bookkeeping are ignored.

    Raises:
        MedvisionError: the folder holds no study, or two studies would share a name.
    """
    from ..io.dicom import is_dicom_file
    from ..io.reader import READ_EXTENSIONS, file_kind

    folder = Path(folder)
    studies: dict[str, Study] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name == SUMMARY:
            continue
        if entry.is_dir():
            if not any(f.is_file() and is_dicom_file(f) for f in sorted(entry.iterdir())[:50]):
                continue
            name = entry.name
        elif entry.is_file() and file_kind(entry) is not None:
            lower = entry.name.lower()
            ending = next((ext for ext in READ_EXTENSIONS if lower.endswith(ext)), "")
            name = entry.name[: len(entry.name) - len(ending)] if ending else entry.name
        else:
            continue
        if name in studies:
            raise MedvisionError(f"'{studies[name].path.name}' and '{entry.name}' in '{folder}' would both be "
                                 f"written as study '{name}': rename one of them")
        studies[name] = Study(name, entry)
    if not studies:
        raise MedvisionError(f"'{folder}' holds no image files or DICOM series folders to run the model on")
    return list(studies.values())


def in_shard(name: str, shard: tuple[int, int]) -> bool:
    """Whether study ``name`` belongs to shard ``(K, N)``: a stable hash of the name, modulo N."""
    k, n = shard
    digest = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")
    return digest % n == k - 1


def output_path(out_dir: Path, study: Study, task: str, ext: str) -> Path:
    """Where a study's result goes: its label map / heatmap, or a JSON file for classification/detection."""
    return out_dir / (f"{study.name}.json" if task in ("classification", "detection") else f"{study.name}{ext}")


def run_batch(bundle, studies: list[Study], out_dir: str | Path, *, ext: str = ".nii.gz",
              shard: tuple[int, int] = (1, 1), options: dict | None = None,
              reader: Callable | None = None) -> Generator[Progress, None, BatchReport]:
    """Run ``bundle`` on each study of this shard not already done; a generator yielding progress.

    Args:
        bundle: a loaded model (any task); built once, reused for every study.
        studies: from :func:`find_studies`.
        out_dir: existing folder for the outputs and ``summary.json``.
        ext: ending of label maps / heatmaps (``.nii.gz``, ``.nrrd``, ``.mha``, ``.nii``).
        shard: ``(K, N)``; only studies :func:`in_shard` are run.
        options: per-run options for :func:`~.run.run_model` (device, overlap, ...).
        reader: ``path -> Volume`` (default: :func:`~..io.read_volume`).

    Returns:
        The report of this run; a failing study is recorded and the run goes on.
    """
    from ..io import read_volume

    out_dir = Path(out_dir)
    (out_dir / RECORDS).mkdir(parents=True, exist_ok=True)
    reader = reader or read_volume
    mine = [s for s in studies if in_shard(s.name, shard)]
    report = BatchReport()
    todo = []
    for study in mine:
        _remove_leftovers(out_dir, study, bundle.task, ext)
        record = _read_record(out_dir, study)
        if record.get("status") == "done" and output_path(out_dir, study, bundle.task, ext).exists():
            report.studies[study.name] = {**record, "status": "skipped"}
        else:
            todo.append(study)
    start = time.perf_counter()
    with ThreadPoolExecutor(1, thread_name_prefix="medvision-read") as reads, \
            ThreadPoolExecutor(1, thread_name_prefix="medvision-write") as writes:
        pending_write: Future | None = None
        next_read = reads.submit(_read, reader, todo[0].path) if todo else None
        try:
            for number, study in enumerate(todo):
                read = next_read
                next_read = reads.submit(_read, reader, todo[number + 1].path) if number + 1 < len(todo) else None
                yield Progress(number, len(todo), f"study {number + 1}/{len(todo)}: {study.name}")
                began = time.perf_counter()
                outcome = yield from _run_one(bundle, study, read, options or {})
                if pending_write is not None:
                    _finish_write(pending_write, report)
                pending_write = writes.submit(_write, out_dir, study, bundle, ext, outcome, began)
            if pending_write is not None:
                _finish_write(pending_write, report)
                pending_write = None
        finally:
            if next_read is not None:
                next_read.cancel()
            if pending_write is not None:   # interrupted: let the write in flight finish, never half a file
                with contextlib.suppress(Exception):
                    pending_write.result()
    report.seconds = time.perf_counter() - start
    if not todo:
        update_summary(out_dir, bundle)
    return report


def _read(reader, path: Path):
    """The volume at ``path``, or the error reading it raised (reported as that study's failure)."""
    try:
        return reader(path)
    except MedvisionError as exc:
        return exc


def _run_one(bundle, study: Study, read: Future, options: dict):
    """``(result, None)`` or ``(None, error message)`` for one study; progress of its engine passed on."""
    from .run import run_model

    volume = read.result()
    if isinstance(volume, MedvisionError):
        return None, str(volume)
    try:
        engine = run_model(bundle, volume, **options)
        result = yield from engine
    except MedvisionError as exc:
        log.warning("study %s failed: %s", study.name, exc)
        return None, str(exc)
    return result, None


def _write(out_dir: Path, study: Study, bundle, ext: str, outcome, began: float) -> tuple[str, dict]:
    """Write one study's output (atomically), then its record and the summary; returns ``(name, record)``."""
    from ..io import write_volume

    task = bundle.task
    result, error = outcome
    target = output_path(out_dir, study, task, ext)
    record = {"status": "failed", "input": str(study.path), "error": error, "output": None}
    if error is None:
        try:
            record = {"status": "done", "input": str(study.path), "output": target.name}
            if task == "segmentation":
                write_volume(result.labels, target, labels=True)
                record["volumes_ml"] = result.volumes_ml
            else:
                payload = _json_result(task, result)
                write_json_atomic(target, payload)
                record.update({k: v for k, v in payload.items() if k != "task"})
        except MedvisionError as exc:
            record = {"status": "failed", "input": str(study.path), "error": str(exc), "output": None}
    record["seconds"] = round(time.perf_counter() - began, 3)
    write_json_atomic(out_dir / RECORDS / f"{study.name}.json", record)
    update_summary(out_dir, bundle)
    return study.name, record


def _finish_write(future: Future, report: BatchReport) -> None:
    name, record = future.result()
    report.studies[name] = record


def _json_result(task: str, result) -> dict:
    if task == "classification":
        return {"task": task, "probabilities": result.probabilities, "prediction": result.prediction}
    return {"task": task, "boxes": [box.to_dict() for box in result.boxes], "score_threshold": result.score_threshold}


def _read_record(out_dir: Path, study: Study) -> dict:
    try:
        return json.loads((out_dir / RECORDS / f"{study.name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _remove_leftovers(out_dir: Path, study: Study, task: str, ext: str) -> None:
    """Temp files a killed run of this study left (``.<output name>.*``; writes go through them)."""
    prefix = "." + output_path(out_dir, study, task, ext).name + "."
    for leftover in out_dir.glob(glob_escape(prefix) + "*"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def update_summary(out_dir: str | Path, bundle) -> dict:
    """Rebuild ``OUT_DIR/summary.json`` from every study's record (all shards), under a file lock."""
    out_dir = Path(out_dir)
    with _locked(out_dir / RECORDS / "summary.lock"):
        studies = {}
        for path in sorted((out_dir / RECORDS).glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                studies[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        summary = {"model": bundle.name, "task": bundle.task,
                   "done": sum(r.get("status") == "done" for r in studies.values()),
                   "failed": sum(r.get("status") == "failed" for r in studies.values()),
                   "studies": studies}
        write_json_atomic(out_dir / SUMMARY, summary)
    return summary


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive advisory lock on ``path`` (POSIX ``flock``; elsewhere no lock)."""
    try:
        import fcntl
    except ImportError:  # Windows: shards should then write to separate folders
        yield
        return
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_folder_input(paths: list[str]) -> bool:
    """Whether ``infer --input`` names one folder of studies (not one DICOM series folder)."""
    if len(paths) != 1 or not os.path.isdir(paths[0]):
        return False
    from ..io.dicom import is_dicom_file

    folder = Path(paths[0])
    return not any(f.is_file() and is_dicom_file(f) for f in sorted(folder.iterdir())[:50])
