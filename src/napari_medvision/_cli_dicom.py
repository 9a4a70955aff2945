"""``medvision dicom-seg`` and ``medvision pacs``: DICOM results and DICOMweb, over core/dicom/."""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path

from ._cli_util import _warn
from .core.errors import MedvisionError

RTSTRUCT_SUFFIX = ".rtstruct.dcm"


def add_dicom_commands(commands) -> None:
    """Register ``dicom-seg`` and ``pacs`` on the ``medvision`` sub-command parser."""
    seg = commands.add_parser("dicom-seg", help="write a label map as DICOM-SEG (or RTSTRUCT) on its DICOM series")
    seg.add_argument("--label", required=True, help="label map file on the series' grid (.nii.gz/.nrrd/.mha)")
    seg.add_argument("--reference", required=True, metavar="DICOM_DIR", help="folder of the source DICOM series")
    seg.add_argument("--output", required=True, metavar="OUT.dcm",
                     help=f"DICOM file to write (a name ending {RTSTRUCT_SUFFIX} writes an RTSTRUCT)")
    seg.add_argument("--model", metavar="M", help="model that made the labels: names, colours, algorithm")
    seg.add_argument("--edited", action="store_true", help="mark the segments MANUAL (hand-corrected)")
    seg.add_argument("--series", metavar="UID", help="series in DICOM_DIR (default: the largest)")
    seg.add_argument("--format", choices=("seg", "rtstruct"), help="default: by the output name")
    seg.add_argument("--trust", action="store_true", help="allow the model's bundle to run its own code")
    seg.set_defaults(run=cmd_dicom_seg)

    pacs = commands.add_parser("pacs", help="search, pull from and push to a PACS over DICOMweb")
    actions = pacs.add_subparsers(dest="pacs_command", required=True, parser_class=commands._parser_class)
    common = {"--url": dict(required=True, metavar="URL", help="DICOMweb root, e.g. http://host:8042/dicom-web"),
              "--user": dict(metavar="U", help="user for HTTP basic auth; password from $MEDVISION_PACS_PASSWORD")}
    search = actions.add_parser("search", help="series matching the filters (QIDO-RS)")
    pull = actions.add_parser("pull", help="retrieve a series into a folder (WADO-RS)")
    push = actions.add_parser("push", help="send DICOM files or folders (STOW-RS)")
    for sub in (search, pull, push):
        for flag, options in common.items():
            sub.add_argument(flag, **options)
    search.add_argument("--patient", metavar="ID", help="patient ID")
    search.add_argument("--name", metavar="NAME", help="patient name (wildcards * allowed)")
    search.add_argument("--date", metavar="YYYYMMDD[-YYYYMMDD]", help="study date or range")
    search.add_argument("--modality", metavar="M")
    search.add_argument("--study", metavar="UID", help="study instance UID")
    search.add_argument("--json", action="store_true")
    pull.add_argument("--series", required=True, metavar="UID")
    pull.add_argument("--output", required=True, metavar="DIR")
    push.add_argument("paths", nargs="+", metavar="PATH", help="DICOM files or folders")
    pacs.set_defaults(run=cmd_pacs)


def wants_rtstruct(output: str, fmt: str | None = None) -> bool:
    return fmt == "rtstruct" or (fmt is None and output.lower().endswith(RTSTRUCT_SUFFIX))


def check_dicom_output(output: str) -> None:
    from .core.io import check_destination

    check_destination(output, (".dcm",))


def cmd_dicom_seg(args) -> int:
    from .core.dicom.source import read_source_series
    from .core.io import read_label_for

    check_dicom_output(args.output)
    source = read_source_series(args.reference, args.series)
    _warn(source.volume.warnings)
    label = read_label_for(source.volume, args.label)
    names, colors, algorithm = {}, {}, None
    if args.model:
        model = _find_model(args.model, args.trust)
        names, colors = dict(model.labels), dict(getattr(model, "colors", {}) or {})
        algorithm = None if args.edited else algorithm_of(model)
    path = write_result(label, source, args.output, names, colors, algorithm, args.format)
    print(f"wrote {path}")
    return 0


def _find_model(name: str, trusted: bool):
    from .core.models import find_model

    return find_model(name, trusted=trusted)


def algorithm_of(model):
    from .core.dicom.seg import Algorithm

    version = str((getattr(model, "metadata", None) or {}).get("version") or "unknown")
    return Algorithm(model.display_name, version)


def write_result(label, source, output, names, colors, algorithm, fmt=None) -> Path:
    """A DICOM-SEG, or an RTSTRUCT when the name ends ``.rtstruct.dcm`` / ``fmt`` says so."""
    if wants_rtstruct(str(output), fmt):
        from .core.dicom.rtstruct import write_rtstruct

        return write_rtstruct(label, source, output, names, colors=colors, algorithm=algorithm)
    from .core.dicom.seg import write_dicom_seg

    return write_dicom_seg(label, source, output, names, colors=colors, algorithm=algorithm)


def infer_dicom_reference(args, task: str):
    """For ``infer --output OUT.dcm``: the DICOM series the result will reference (None for other outputs).

    Checked before the model runs, so a wrong input costs no inference.
    """
    if not args.output or not args.output.lower().endswith(".dcm"):
        return None
    from .core.dicom.source import read_source_series

    if task != "segmentation":
        raise MedvisionError("--output .dcm writes a DICOM-SEG: only a segmentation model's result can be one")
    if len(args.input) != 1 or not Path(args.input[0]).is_dir():
        raise MedvisionError("--output .dcm writes a DICOM-SEG referencing the input series: give --input a "
                             "DICOM series folder")
    check_dicom_output(args.output)
    return read_source_series(args.input[0], args.series)


def write_infer_result(result, source, bundle, output) -> Path:
    return write_result(result.labels, source, output, result.label_names, getattr(bundle, "colors", {}) or {},
                        algorithm_of(bundle))


# --- pacs -------------------------------------------------------------------------
def _client(args):
    from .core.dicom.dicomweb import PASSWORD_ENV, PacsClient, PacsCredentials

    credentials = PacsCredentials.from_environment(args.user)
    if args.user and credentials.password is None:
        if not sys.stdin.isatty():
            raise MedvisionError(f"--user {args.user} needs a password: set ${PASSWORD_ENV} (never on the "
                                 "command line)")
        credentials = PacsCredentials(args.user, getpass.getpass(f"PACS password for {args.user}: "))
    return PacsClient(args.url, credentials)


def cmd_pacs(args) -> int:
    client = _client(args)
    if args.pacs_command == "search":
        records = client.search(patient_id=args.patient, patient_name=args.name, study_date=args.date,
                                modality=args.modality, study_uid=args.study)
        if args.json:
            print(json.dumps([record.to_dict() for record in records]))
        else:
            for r in records:
                print(f"{r.patient_id:<14} {r.study_date:<9} {r.modality:<6} {r.instances or '?':>5}  "
                      f"{r.description:<30} {r.series_uid}")
            print(f"{len(records)} series", file=sys.stderr)
        return 0
    if args.pacs_command == "pull":
        files = client.pull(args.series, args.output,
                            progress=lambda done, total: print(f"instance {done}/{total or '?'}", file=sys.stderr))
        print(f"wrote {len(files)} files to {os.fspath(args.output)}")
        return 0
    from .core.dicom.pacs_cache import push_paths

    print(f"stored {push_paths(client, args.paths)} instance(s)")
    return 0
