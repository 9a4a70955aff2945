"""``medvision import`` and ``medvision export``: models in and out of the user's models folder."""

from __future__ import annotations

import argparse
import json

from ._cli_checks import positive_int as _positive_int
from ._cli_util import _warn


def _pairs(text: str) -> tuple[float, float]:
    parts = text.replace(":", ",").split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, not '{text}'")
    return float(parts[0]), float(parts[1])


def _labels(text: str) -> dict[int, str]:
    labels = {}
    for item in filter(None, text.split(",")):
        value, sep, name = item.partition("=")
        if not sep or not value.strip().isdigit() or not name.strip():
            raise argparse.ArgumentTypeError(f"expected VALUE=NAME pairs like 1=liver,2=spleen, not '{item}'")
        labels[int(value)] = name.strip()
    return labels


def cmd_import(args) -> int:
    from .core.models.importer import NetworkFacts, import_model
    from .core.models.registry import load_model

    facts = None
    if args.labels or args.patch_size:
        facts = NetworkFacts(labels=args.labels or {}, patch_size=tuple(args.patch_size or ()),
                             spacing=tuple(args.spacing) if args.spacing else None, window=args.window,
                             percentiles=args.percentiles, in_channels=args.in_channels, task=args.task,
                             orientation=args.orientation, overlap=args.overlap)
    target = import_model(args.source, name=args.name, facts=facts, trusted=args.trust)
    record = load_model(target).summary()
    print(json.dumps(record) if args.json else f"imported {record['name']} ({record['kind']}, {record['task']}) "
                                                 f"to {record['path']}")
    return 0


def cmd_export(args) -> int:
    from .core.models import find_bundle
    from .core.models.exporter import export_model

    record = export_model(find_bundle(args.model, trusted=args.trust), args.format, args.output)
    if record["max_abs_diff"] > 1e-3:
        _warn([f"the exported graph differs from torch by up to {record['max_abs_diff']:.3g} on one window"])
    print(json.dumps(record) if args.json else
          f"wrote {record['output']} ({record['format']}); max abs difference to torch on a "
          f"{'x'.join(map(str, record['window'][2:]))} window: {record['max_abs_diff']:.3g}")
    return 0


def add_model_commands(commands) -> None:
    """Add the ``import`` and ``export`` sub-commands to the ``medvision`` parser."""
    imp = commands.add_parser("import", help="add a bundle, nnU-Net folder/zip or TorchScript/ONNX file to your models")
    imp.add_argument("source", help="bundle folder, nnU-Net results folder or .zip, or a .ts/.pt/.onnx network")
    imp.add_argument("--name", help="model name (default: from the source)")
    imp.add_argument("--task", default="segmentation", choices=("segmentation",),
                     help="what a bare network does (bare networks: segmentation)")
    imp.add_argument("--labels", type=_labels, help="bare network: output channels, e.g. 1=liver,2=spleen")
    imp.add_argument("--spacing", type=float, nargs="+", metavar="MM", help="bare network: voxel size it expects")
    imp.add_argument("--window", type=_pairs, metavar="LOW,HIGH", help="bare network: CT window in HU -> 0..1")
    imp.add_argument("--percentiles", type=_pairs, metavar="LOW,HIGH",
                     help="bare network: MR intensity percentiles -> 0..1")
    imp.add_argument("--patch-size", type=int, nargs="+", metavar="N", help="bare network: window size")
    imp.add_argument("--in-channels", type=_positive_int, default=1, help="bare network: input channels")
    imp.add_argument("--orientation", metavar="CODES", help="bare network: axis codes to turn the image to (RAS)")
    imp.add_argument("--overlap", type=float, default=0.5, help="bare network: sliding-window overlap (0..1)")
    imp.add_argument("--trust", action="store_true", help="the bundle may run its own code while it is checked")
    imp.add_argument("--json", action="store_true")
    imp.set_defaults(run=cmd_import)

    export = commands.add_parser("export", help="a segmentation bundle's network as ONNX or TorchScript")
    export.add_argument("--model", required=True)
    export.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    export.add_argument("--output", required=True, help="file to write (.onnx / .ts)")
    export.add_argument("--trust", action="store_true")
    export.add_argument("--json", action="store_true")
    export.set_defaults(run=cmd_export)
