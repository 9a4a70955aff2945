"""Start a fine-tune over several processes, or join the group ``torchrun`` (or a scheduler) started.

``finetune --nproc N`` spawns N processes (``torch.multiprocessing``) that form one group (gloo on the
CPU, NCCL on GPUs, one GPU per process); the same command started by ``torchrun`` or a scheduler
(``WORLD_SIZE`` > 1 and ``RANK`` set) joins the group the launcher made instead. Each process prepares
the cases and trains on its share of each epoch; every process validates the same network (MONAI's
metrics gather across the group, so all take the same decisions), and process 0 alone writes the new
version (atomically).

A failure in any process ends them all (the spawner stops the rest; under ``torchrun`` a survivor's
next collective fails and the launcher stops the group) with one clear error, and no version.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
from pathlib import Path
from typing import Generator

import torch
import torch.distributed as dist

from ..errors import MedvisionError
from .distributed import Group, uses_cuda, from_environment

#: How long a process waits for the others in one collective before it gives up.
TIMEOUT = datetime.timedelta(minutes=10)


def run_in_group(job: dict, nproc: int) -> Generator[object, None, dict]:
    """Run the fine-tune ``job`` (see :func:`_finetune_job`) over ``nproc`` spawned processes, or in the
    launcher's group when this process is one of it; yields process 0's progress, returns its summary.

    Raises:
        MedvisionError: a process failed (its error quoted); no version was written.
    """
    group = from_environment()
    if group is not None:
        return (yield from _joined(job, group))
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    messages = context.SimpleQueue()
    port = _free_port()
    processes = mp.start_processes(_spawned, args=(nproc, port, job, messages), nprocs=nproc, join=False,
                                   start_method="spawn")
    summary = None
    try:
        while True:
            try:
                finished = processes.join(timeout=0.2)
            except mp.ProcessRaisedException as exc:
                raise MedvisionError(f"fine-tuning process {exc.error_index} of {nproc} failed: "
                                     f"{_last_line(exc.msg)}; no version was written") from None
            except mp.ProcessExitedException as exc:
                raise MedvisionError(f"fine-tuning process {exc.error_index} of {nproc} died "
                                     f"(exit {exc.exit_code}); no version was written") from None
            while not messages.empty():
                kind, value = messages.get()
                if kind == "summary":
                    summary = value
                else:
                    yield value
            if finished:
                break
    except BaseException:
        _stop(processes)
        _remove_staging(job.get("output"))
        raise
    if summary is None:
        raise MedvisionError("the fine-tuning processes ended without a result; no version was written")
    return summary


def _joined(job: dict, group: Group) -> Generator[object, None, dict]:
    """This process's part of a launcher's group (``torchrun``): progress of process 0 only."""
    _init(group, "env://", job["device"])
    try:
        steps = _finetune_job(job, group)
        summary = yield from (steps if group.is_main else _silent(steps))
    except MedvisionError:
        if group.is_main:
            _remove_staging(job.get("output"))
        raise
    except Exception as exc:   # a collective failed (gloo raises RuntimeError or TypeError): a peer is gone
        if group.is_main:
            _remove_staging(job.get("output"))
        raise MedvisionError(f"process {group.rank} of {group.world_size}: the group failed "
                             f"({_last_line(str(exc))[:160]}); another process probably stopped: see its "
                             "error; no version was written") from None
    except BaseException:
        if group.is_main:
            _remove_staging(job.get("output"))
        raise
    finally:
        dist.destroy_process_group()
    return summary


def _silent(steps):
    result = None
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            result = stop.value
            break
    return result


def _spawned(rank: int, world: int, port: int, job: dict, messages) -> None:
    """Entry of a spawned process: join the group on a loopback port, run, report (process 0)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    group = Group(rank, world, rank)
    if not uses_cuda(job["device"]):
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    _init(group, f"tcp://127.0.0.1:{port}", job["device"])
    try:
        steps = _finetune_job(job, group)
        while True:
            try:
                step = next(steps)
            except StopIteration as stop:
                if group.is_main:
                    messages.put(("summary", stop.value))
                break
            if group.is_main:
                messages.put(("step", step))
    except MedvisionError as exc:      # a user error: its message, without the traceback around it
        raise RuntimeError(f"MedvisionError: {exc}") from None
    finally:
        dist.destroy_process_group()


def _init(group: Group, init_method: str, device: str) -> None:
    cuda = uses_cuda(device)
    if cuda:
        torch.cuda.set_device(group.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", init_method=init_method, rank=group.rank,
                            world_size=group.world_size, timeout=TIMEOUT)


def _finetune_job(job: dict, group: Group):
    """The fine-tune generator of ``job`` for this process (a plain dict: it travels to spawned processes)."""
    from ..models import find_bundle
    from .case_store import CaseStore
    from .finetune import finetune
    from .versions import VersionStore

    bundle = find_bundle(job["model"], trusted=job["trusted"])
    output = Path(job["output"])
    device = f"cuda:{group.local_rank}" if uses_cuda(job["device"]) else "cpu"

    def run():
        result = yield from finetune(bundle, CaseStore(job["cases"]).check(), VersionStore(output.parent),
                                     job["settings"], device=device, output=output, group=group)
        return {"parent": str(bundle.path), "processes": group.world_size, **result.summary()}

    return run()


def _stop(processes) -> None:
    for process in processes.processes:
        if process.is_alive():
            process.terminate()
    for process in processes.processes:
        process.join(5)
        if process.is_alive():
            process.kill()


def _remove_staging(output) -> None:
    """A version folder half assembled by a killed process 0 (``.NAME.*`` beside it): never the version."""
    if not output:
        return
    output = Path(output)
    for leftover in output.parent.glob(f".{output.name}.*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    line = lines[-1] if lines else "unknown error"
    for prefix in ("RuntimeError: MedvisionError: ", "RuntimeError: "):
        if line.startswith(prefix):
            return line[len(prefix):]
    return line


__all__ = ["run_in_group"]
