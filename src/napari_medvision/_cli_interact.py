"""``medvision interact``: clicks (and a box) on a study -> a 0/1 label image of one structure."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ._cli_util import _warn


def click(text: str) -> tuple[int, int, int, bool]:
    """``X,Y,Z,SIGN`` (SimpleITK voxel index, ``+`` or ``-``) for argparse."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4 or parts[3] not in ("+", "-"):
        raise argparse.ArgumentTypeError(f"expected X,Y,Z,SIGN with SIGN + or -, like 120,88,14,+ (not '{text}')")
    return (*_whole_numbers(parts[:3], text), parts[3] == "+")


def box(text: str) -> tuple[int, ...]:
    """``X0,Y0,Z0,X1,Y1,Z1`` (two opposite corners, SimpleITK voxel indices) for argparse."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 6:
        raise argparse.ArgumentTypeError(f"expected X0,Y0,Z0,X1,Y1,Z1 (six voxel indices), not '{text}'")
    return _whole_numbers(parts, text)


def attach_click_values(argv: list[str]) -> list[str]:
    """``--point -1,0,0,-`` as ``--point=-1,0,0,-``: argparse takes a value that starts with ``-`` for
    an option and says only "expected one argument"; a click's value gets its own message this way."""
    joined, values = [], iter(argv)
    for item in values:
        if item in ("--point", "--box"):
            value = next(values, None)
            joined.append(item if value is None else f"{item}={value}")
        else:
            joined.append(item)
    return joined


def _whole_numbers(parts, text) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"voxel indices are whole numbers: '{text}'") from None


def cmd_interact(args) -> int:
    from ._cli_checks import check_input
    import numpy as np

    from .core.interactive import choose_engine, prompts_from_itk
    from .core.io import check_destination, read_volume, write_volume

    check_input(args.input)
    check_destination(args.output)
    if args.device != "auto":   # a forced GPU this machine lacks is an error, whichever engine runs
        from .core.models.device import choose_device

        choose_device(args.device)
    volume = read_volume(args.input)
    _warn(volume.warnings)
    dimension = 2 if volume.metadata.get("dimension") == 2 else 3
    prompts = prompts_from_itk(args.point or [], args.box, dimension=dimension).check(volume.shape)
    engine = choose_engine(volume.array, volume.spacing, args.model, trusted=args.trust, device=args.device,
                           label=args.label)
    start = time.perf_counter()
    mask = np.ascontiguousarray(engine.segment_volume(volume, prompts), dtype=np.uint8)
    seconds = time.perf_counter() - start
    write_volume(volume.with_array(mask), args.output, labels=True)
    voxels = int(mask.sum())
    record = {"output": str(args.output), "engine": engine.name, "voxels": voxels}
    if dimension == 2:   # a picture's z spacing is no thickness: its area, not a volume
        record["area_cm2"] = voxels * float(volume.spacing[0] * volume.spacing[1]) / 100
        size = f"{record['area_cm2']:.2f} cm2"
    else:
        record["volume_ml"] = voxels * float(volume.spacing[0] * volume.spacing[1] * volume.spacing[2]) / 1000
        size = f"{record['volume_ml']:.2f} mL"
    record["seconds"] = round(seconds, 3)
    print(json.dumps(record) if args.json else
          f"{engine.name}: {voxels} voxels ({size}) in {seconds:.2f} s; wrote {args.output}")
    if not voxels:
        print("warning: the mask is empty; click nearer the structure's middle", file=sys.stderr)
    return 0


def add_interact_command(commands) -> None:
    """Register ``medvision interact`` on the main parser's sub-commands."""
    interact = commands.add_parser("interact", help="clicks (and a box) on a study -> 0/1 mask of one structure")
    interact.add_argument("--input", required=True, help="image file or DICOM series folder")
    interact.add_argument("--point", action="append", type=click, metavar="X,Y,Z,SIGN",
                          help="voxel index as SimpleITK indexes the input; SIGN + (inside) or - (not part of it); "
                               "repeat for more clicks (a box alone also prompts a mask)")
    interact.add_argument("--box", type=box, metavar="X0,Y0,Z0,X1,Y1,Z1",
                          help="two opposite corners of a box around the structure (+ clicks lie inside it)")
    interact.add_argument("--model", help="interactive engine, or an interactive bundle (DeepEdit- or VISTA3D-style: "
                                          "registry name or folder); default: the best engine for the image")
    interact.add_argument("--label", help="DeepEdit bundle of several structures: the label name the clicks are for "
                                          "(default: its first one besides background)")
    interact.add_argument("--trust", action="store_true", help="allow the bundle to run its own code")
    interact.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    interact.add_argument("--output", required=True, help="0/1 label image (.nii.gz/.nrrd/.mha)")
    interact.add_argument("--json", action="store_true")
    interact.set_defaults(run=cmd_interact, exit_at_once=True, defer_imports=True)
