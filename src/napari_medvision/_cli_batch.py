"""``medvision infer --input DIR --output OUT_DIR [--shard K/N]``: a folder of studies in one process.

``cli.cmd_infer`` hands over here when ``--input`` is one folder of studies (not a DICOM series).
Exit status: 0 when every study of the shard is done, 1 when one or more failed (each reported,
the others written), 2 for a user error before any study ran (bad shard, model, output folder).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ._cli_util import drive
from .core.errors import MedvisionError

FORMATS = (".nii.gz", ".nrrd", ".mha", ".nii")


def add_batch_options(infer) -> None:
    """The options of ``infer`` that only a folder of studies uses."""
    infer.add_argument("--shard", metavar="K/N",
                       help="folder input: run only shard K of N (1 <= K <= N), e.g. a scheduler's array index")
    infer.add_argument("--format", default=".nii.gz", choices=FORMATS,
                       help="folder input: file type of each study's label map (default .nii.gz)")


def wants_batch(args) -> bool:
    """Whether this ``infer`` call is a batch (one folder of studies as input); checks --shard's use."""
    from .core.inference.batch import is_folder_input

    batch = is_folder_input(args.input)
    if args.shard is not None and not batch:
        raise MedvisionError("--shard is for a folder of studies: give --input a folder of images / DICOM series")
    return batch


def cmd_infer_batch(args) -> int:
    from .core.inference.batch import find_studies, parse_shard, run_batch
    from .core.models import find_model

    shard = parse_shard(args.shard) if args.shard is not None else (1, 1)
    if not args.output:
        raise MedvisionError("a folder of studies needs --output OUT_DIR (a folder for the results)")
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise MedvisionError(f"--output '{out_dir}' is a file; a folder of studies needs a folder for its results")
    studies = find_studies(args.input[0])
    bundle = find_model(args.model, trusted=args.trust)
    bundle.check_trust()
    if args.tta and args.no_tta:
        raise MedvisionError("--tta and --no-tta contradict each other: give one")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MedvisionError(f"cannot create --output folder '{out_dir}': {exc.strerror}") from None
    options = dict(device=args.device, overlap=args.overlap, sw_batch_size=args.sw_batch_size,
                   tta=False if args.no_tta else (args.tta or None), min_component_mm3=args.min_component_mm3,
                   score_threshold=args.score_threshold, backend=args.backend, folds=args.folds,
                   checkpoint=args.checkpoint, exact_postprocessing=args.exact_postprocessing or None)
    job = run_batch(bundle, studies, out_dir, ext=args.format, shard=shard,
                    options={k: v for k, v in options.items() if v is not None})
    report = drive(job, quiet=args.json, shown=lambda text: text.startswith("study "))  # not every window
    record = {"task": bundle.task, "model": bundle.name, "shard": f"{shard[0]}/{shard[1]}",
              "summary": str(out_dir / "summary.json"), **report.summary()}
    if args.json:
        print(json.dumps(record))
    else:
        print(f"{record['done']} done, {record['skipped']} already done, {record['failed']} failed "
              f"in {record['seconds']} s; summary: {record['summary']}")
    for name, study in report.studies.items():
        if study["status"] == "failed":
            print(f"error: study {name} failed: {study['error']}", file=sys.stderr)
    return 1 if record["failed"] else 0
