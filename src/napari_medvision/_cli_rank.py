"""``medvision rank``: a folder of studies, most uncertain for a segmentation model first ("label next")."""

from __future__ import annotations

import json
import sys


def cmd_rank(args) -> int:
    from .core.errors import ModelError
    from .core.interactive.rank import find_studies, rank_studies
    from .core.models import find_model

    studies = find_studies(args.input)
    model = find_model(args.model, trusted=args.trust)
    if model.task != "segmentation":
        raise ModelError(f"'{args.model}' is a {model.task} model: ranking needs a segmentation model")
    model.check_trust()
    job = rank_studies(model, studies, device=args.device)
    while True:
        try:
            step = next(job)
        except StopIteration as stop:
            records = stop.value
            break
        if not args.json:
            print(f"{step.message}...", file=sys.stderr)
    if args.json:
        print(json.dumps(records))
        return 0
    for record in records:
        score = "skipped" if record["score"] is None else f"{record['score']:.4f}"
        print(f"{score:>8}  {record['path']}" + (f"  ({record['skipped']})" if "skipped" in record else ""))
    return 0


def add_rank_command(commands) -> None:
    """Register ``medvision rank`` on the main parser's sub-commands."""
    rank = commands.add_parser("rank", help="studies in a folder, most uncertain for a model first (label next)")
    rank.add_argument("--model", required=True, help="segmentation model: registry name or bundle folder")
    rank.add_argument("--input", required=True, help="folder of studies (image files, DICOM folders, case store)")
    rank.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    rank.add_argument("--trust", action="store_true", help="allow the bundle to run its own code")
    rank.add_argument("--json", action="store_true", help='print a JSON list of {"path", "score"}')
    rank.set_defaults(run=cmd_rank, exit_at_once=True, defer_imports=True)
