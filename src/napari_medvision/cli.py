"""The ``medvision`` command: a thin shell over :mod:`napari_medvision.core`.

User errors print one ``error: ...`` line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .core.errors import MedvisionError


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one ``error:`` line and exit 2, like every user error."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _warn(warnings) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def cmd_info(args) -> int:
    from .core.io import read_volume, volume_info

    volume = read_volume(args.path, series_uid=args.series, frame=args.frame)
    _warn(volume.warnings)
    info = volume_info(volume)
    if args.json:
        print(json.dumps(info))
        return 0
    for key, value in info.items():
        print(f"{key:>10}: {value}")
    return 0


def cmd_phantom(args) -> int:
    from .core.phantom import write_phantom_dataset

    def progress(done, total):
        print(f"case {done}/{total}", file=sys.stderr)

    store = write_phantom_dataset(
        args.out_dir, cases=args.cases, seed=args.seed, progress=progress,
        shape=tuple(args.shape), spacing=tuple(args.spacing), modality=args.modality,
        max_lesions=args.max_lesions, vary_slice_thickness=args.vary_thickness,
    )
    print(json.dumps({"path": str(store.root), "cases": store.case_ids()}) if args.json
          else f"wrote {len(store.case_ids())} cases to {store.root}")
    return 0


def cmd_demo(args) -> int:
    from ._qt.demo import run_demo

    run_demo()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="medvision", description="Deep learning on medical images (napari-medvision).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    info = commands.add_parser("info", help="size, spacing, origin, direction and modality of a study")
    info.add_argument("path", help="image file or DICOM series folder")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.add_argument("--series", metavar="UID", help="series to read from a DICOM folder (default: largest)")
    info.add_argument("--frame", type=int, metavar="K", help="volume to read from a 4D file")
    info.set_defaults(run=cmd_info)

    phantom = commands.add_parser("phantom", help="write synthetic CT cases in the case-store layout")
    phantom.add_argument("out_dir")
    phantom.add_argument("--cases", type=_positive_int, default=4)
    phantom.add_argument("--seed", type=int, default=0)
    phantom.add_argument("--shape", type=int, nargs=3, default=(64, 128, 128), metavar=("Z", "Y", "X"))
    phantom.add_argument("--spacing", type=float, nargs=3, default=(2.8, 2.8, 5.0), metavar=("X", "Y", "Z"),
                         help="voxel size in mm")
    phantom.add_argument("--modality", choices=("CT", "MR"), default="CT")
    phantom.add_argument("--max-lesions", type=int, default=4)
    phantom.add_argument("--vary-thickness", action="store_true", help="vary slice thickness between cases")
    phantom.add_argument("--json", action="store_true")
    phantom.set_defaults(run=cmd_phantom)

    demo = commands.add_parser("demo", help="open napari with a sample study and the plugin's docks")
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except MedvisionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
