"""Fine-tuning over several processes: PyTorch DistributedDataParallel, started here or by ``torchrun``.

``finetune --nproc N`` spawns N processes (``torch.multiprocessing``) that form one group (gloo on the
CPU, NCCL on GPUs, one GPU per process); the same command started by ``torchrun`` or a scheduler
(``WORLD_SIZE`` > 1 and ``RANK`` set) joins the group the launcher made instead. Each process prepares
the cases, trains on its share of each epoch (``DistributedSampler``) with gradients averaged by DDP;
every process validates the same network (MONAI's metrics gather across the group, so all take the
same decisions), and process 0 alone writes the new version (atomically).

A failure in any process ends them all (the spawner stops the rest; under ``torchrun`` a survivor's
next collective fails and the launcher stops the group) with one clear error, and no version.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Generator

import torch
import torch.distributed as dist

from ..errors import MedvisionError

#: How long a process waits for the others in one collective before it gives up.
TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class Group:
    """This process's place in the group: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int
    world_size: int
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> Group | None:
    """The group a launcher (``torchrun``, a scheduler) started this process in; None when alone."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ["RANK"]) if world > 1 else 0
    except (KeyError, ValueError):
        return None
    if world <= 1:
        return None
    return Group(rank, world, int(os.environ.get("LOCAL_RANK", rank)))


def check_nproc(nproc: int, device: str) -> None:
    """Refuse a process count this machine cannot give: more GPUs than it has."""
    if nproc < 1:
        raise MedvisionError(f"--nproc must be at least 1, not {nproc}")
    if _uses_cuda(device) and nproc > torch.cuda.device_count():
        raise MedvisionError(f"--nproc {nproc} needs {nproc} GPUs; this machine has {torch.cuda.device_count()}")


def _uses_cuda(device: str) -> bool:
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


# -- pieces the trainer uses --------------------------------------------------------------------
def wrap(network: torch.nn.Module, group: Group | None, device: torch.device) -> torch.nn.Module:
    """``network`` in DDP for a group (its parameters broadcast from process 0), else as it is."""
    if group is None:
        return network
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)


def sampler(dataset, group: Group | None, seed: int):
    """A ``DistributedSampler`` giving this process its share of ``dataset`` (None when alone)."""
    if group is None:
        return None
    from torch.utils.data.distributed import DistributedSampler

    return DistributedSampler(dataset, num_replicas=group.world_size, rank=group.rank, shuffle=True, seed=seed)


def share_of(steps: int, group: Group | None) -> int:
    """Steps per epoch of one process, so that the group sees as many batches as one process would."""
    return steps if group is None else max(1, -(-steps // group.world_size))


def agree(flag: bool, group: Group | None) -> bool:
    """True in every process when it is true in any (e.g. "time is up", measured by each clock)."""
    if group is None:
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def same_buffers(network: torch.nn.Module) -> None:
    """Process 0's buffers (e.g. BatchNorm running statistics) in every process."""
    with torch.no_grad():
        for buffer in network.buffers():
            dist.broadcast(buffer, src=0)


# -- launching ----------------------------------------------------------------------------------
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
    if not _uses_cuda(job["device"]):
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
    cuda = _uses_cuda(device)
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
    device = f"cuda:{group.local_rank}" if _uses_cuda(job["device"]) else "cpu"

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


__all__ = ["Group", "agree", "check_nproc", "from_environment", "run_in_group", "same_buffers", "sampler",
           "share_of", "wrap"]
