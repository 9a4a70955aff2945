"""``medvision finetune --nproc N``, and the same command started by ``torchrun`` (one process of a group)."""

from __future__ import annotations

import json

from ._cli_checks import positive_int


def add_ddp_options(finetune) -> None:
    finetune.add_argument("--nproc", type=positive_int, default=1,
                          help="train in N processes (DistributedDataParallel: gloo on the CPU, NCCL on GPUs); "
                               "under torchrun the launcher's group is joined instead")


def wants_group(args) -> bool:
    """Whether this fine-tune runs over several processes (``--nproc`` > 1, or started by a launcher)."""
    from .core.training.distributed import from_environment

    return args.nproc > 1 or from_environment() is not None


def cmd_finetune_group(args, bundle, store, output, settings, drive) -> int:
    """Run the fine-tune over the group; process 0 prints what a one-process run prints."""
    from .core.training.distributed import check_nproc, from_environment
    from .core.training.launch import run_in_group

    group = from_environment()
    if group is None:
        check_nproc(args.nproc, args.device)
    job = {"model": str(bundle.path), "trusted": args.trust, "cases": str(store.root), "output": str(output),
           "settings": settings, "device": args.device}
    summary = drive(run_in_group(job, args.nproc), quiet=args.json or (group is not None and not group.is_main))
    if group is not None and not group.is_main:
        return 0
    print(json.dumps(summary) if args.json else
          f"wrote {summary['version']} with {summary['processes']} processes: validation Dice "
          f"{summary['base_dice']} -> {summary['best_dice']} (best epoch {summary['best_epoch']}, "
          f"{summary['seconds']} s)")
    return 0
