"""``medvision interact``: clicks (and a box) on a study -> a 0/1 label image of one structure."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ._cli_util import _warn


def click(text: str) -> tuple[int, int, int | None, bool]:
    """``X,Y,Z,SIGN`` (SimpleITK voxel index, ``+`` or ``-``) for argparse; ``X,Y,SIGN`` on a 2D
    image (z None: :func:`planar` checks the image is 2D)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (3, 4) or parts[-1] not in ("+", "-"):
        raise argparse.ArgumentTypeError(f"expected X,Y,Z,SIGN with SIGN + or -, like 120,88,14,+ "
                                         f"(X,Y,SIGN on a 2D image; not '{text}')")
    numbers = _whole_numbers(parts[:-1], text)
    return (*numbers, None, parts[-1] == "+") if len(numbers) == 2 else (*numbers, parts[-1] == "+")


def box(text: str) -> tuple[int, ...]:
    """``X0,Y0,Z0,X1,Y1,Z1`` (two opposite corners, SimpleITK voxel indices) for argparse;
    ``X0,Y0,X1,Y1`` on a 2D image (z None)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (4, 6):
        raise argparse.ArgumentTypeError(f"expected X0,Y0,Z0,X1,Y1,Z1 (six voxel indices; X0,Y0,X1,Y1 on a "
                                         f"2D image), not '{text}'")
    numbers = _whole_numbers(parts, text)
    return (*numbers[:2], None, *numbers[2:], None) if len(numbers) == 4 else numbers


def planar(points, box_xyz, dimension: int):
    """The clicks and box with a z of 0 where they gave only x and y, which only a 2D image allows.

    Raises:
        PromptError: a click or box without z on a 3D image.
    """
    from .core.interactive.prompts import PromptError

    if dimension == 3 and (any(p[2] is None for p in points) or (box_xyz is not None and None in box_xyz)):
        raise PromptError("the image is 3D: give each click as X,Y,Z,SIGN (and a box as X0,Y0,Z0,X1,Y1,Z1)")
    points = [(x, y, 0 if z is None else z, sign) for x, y, z, sign in points]
    return points, None if box_xyz is None else tuple(0 if v is None else v for v in box_xyz)


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
    check_destination(args.output, inputs=(args.input,))
    if args.device != "auto":   # a forced GPU this machine lacks is an error, whichever engine runs
        from .core.models.device import choose_device

        choose_device(args.device)
    volume = read_volume(args.input)
    _warn(volume.warnings)
    dimension = 2 if volume.metadata.get("dimension") == 2 else 3
    points, box_xyz = planar(args.point or [], args.box, dimension)
    prompts = prompts_from_itk(points, box_xyz, dimension=dimension).check(volume.shape)
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
                               "repeat for more clicks (a box alone also prompts a mask); X,Y,SIGN on a 2D image")
    interact.add_argument("--box", type=box, metavar="X0,Y0,Z0,X1,Y1,Z1",
                          help="two opposite corners of a box around the structure (+ clicks lie inside it); "
                               "X0,Y0,X1,Y1 on a 2D image")
    interact.add_argument("--model", help="interactive engine, or an interactive bundle (DeepEdit- or VISTA3D-style: "
                                          "registry name or folder); default: the best engine for the image")
    interact.add_argument("--label", help="DeepEdit bundle of several structures: the label name the clicks are for "
                                          "(default: its first one besides background)")
    interact.add_argument("--trust", action="store_true", help="allow the bundle to run its own code")
    interact.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    interact.add_argument("--output", required=True, help="0/1 label image (.nii.gz/.nrrd/.mha)")
    interact.add_argument("--json", action="store_true")
    interact.set_defaults(run=cmd_interact, exit_at_once=True, defer_imports=True)
