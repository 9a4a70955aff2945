"""The ``medvision`` command: a thin shell over :mod:`napari_medvision.core`.

User errors print one ``error: ...`` line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ._cli_checks import (
    check_infer_output,
    check_input,
    checked_store,
    fraction,
    non_negative_float,
    non_negative_int,
    overlap,
    positive_float,
)
from ._cli_checks import positive_int as _positive_int
from ._cli_ddp import add_ddp_options, cmd_finetune_group, wants_group
from ._cli_batch import add_batch_options, cmd_infer_batch, wants_batch
from ._cli_interact import add_interact_command, attach_click_values
from ._cli_dicom import add_dicom_commands, infer_dicom_reference, write_infer_result
from ._cli_models import add_model_commands
from ._cli_process import deferred_imports, exit_now, library_warnings_to_log
from ._cli_rank import add_rank_command
from ._cli_server import add_server_options, cmd_finetune_server, cmd_infer_server, cmd_models_server
from ._cli_util import _warn
from ._cli_util import drive as _drive
from ._cli_util import drive_training as _drive_training
from ._cli_util import train_line as _train_line
from .core.errors import MedvisionError


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one ``error:`` line and exit 2, like every user error."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


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


def cmd_models(args) -> int:
    if args.server:
        return cmd_models_server(args)
    from .core.models import list_models, model_folders

    records = [model.summary() for model in list_models()]
    if args.json:
        print(json.dumps(records))
        return 0
    if not records:
        print("no models found in: " + ", ".join(str(f) for f in model_folders()))
    for record in records:
        labels = ", ".join(record["labels"].values())
        print(f"{record['name']:<32} {record.get('kind', 'bundle'):<12} {record['task']:<15} {labels}\n"
              f"{'':<32} {record['path']}")
        print(f"{'':<32} {_trust_line(record)}")
        for finding in record["trust_findings"]:
            print(f"{'':<34}- {finding}")
    return 0


def _trust_line(record: dict) -> str:
    if not record["needs_trust"]:
        return "runs no code of its own (no trust needed)"
    return "needs trust (trusted: remembered)" if record["trusted"] else "needs trust (--trust, or Trust in the dock):"


def cmd_trust(args) -> int:
    from .core.models import trust_store

    if args.trust_command == "list":
        records = trust_store.trusted_bundles()
        if args.json:
            print(json.dumps(records))
        for record in records if not args.json else ():
            print(f"{record['hash'][:16]}  {record['name']:<32} {record['trusted_at']}  {record['path']}")
        if not records and not args.json:
            print(f"no trusted bundles in {trust_store.trust_file()}")
        return 0
    for record in trust_store.revoke(args.target):
        print(f"revoked {record['name']} ({record['hash'][:16]})")
    return 0


def cmd_infer(args) -> int:
    from .core.backend import InProcessBackend
    from .core.io import read_volume, write_volume
    from .core.models import find_model

    for path in args.input:
        check_input(path)
    if args.server:
        return cmd_infer_server(args)
    if wants_batch(args):
        return cmd_infer_batch(args)
    bundle = find_model(args.model, trusted=args.trust)
    dicom_reference = infer_dicom_reference(args, bundle.task)  # --output OUT.dcm: a DICOM-SEG
    if dicom_reference is None:
        check_infer_output(args.output, bundle.task, args.input)
    bundle.check_trust()
    if args.tta and args.no_tta:
        raise MedvisionError("--tta and --no-tta contradict each other: give one")
    volumes = [read_volume(path, series_uid=args.series, frame=args.frame) for path in args.input]
    for item in volumes:
        _warn(item.warnings)
    volume = volumes[0]
    engine = InProcessBackend().run_model(bundle, volumes if len(volumes) > 1 or bundle.kind == "nnunet" else volume,
                                          device=args.device, overlap=args.overlap, sw_batch_size=args.sw_batch_size,
                                          tta=False if args.no_tta else (args.tta or None),
                                          min_component_mm3=args.min_component_mm3,
                                          score_threshold=args.score_threshold, backend=args.backend, folds=args.folds,
                                          exact_postprocessing=args.exact_postprocessing or None,
                                          checkpoint=args.checkpoint)
    result = _drive(engine, quiet=args.json)
    _warn(result.notes)
    record = {"task": bundle.task}
    if bundle.task == "segmentation":
        record.update(labels={str(k): v for k, v in result.label_names.items()}, volumes_ml=result.volumes_ml,
                      seconds=round(result.seconds, 3))
        if args.output and dicom_reference is not None:
            write_infer_result(result, dicom_reference, bundle, args.output)
        elif args.output:
            write_volume(result.labels, args.output, labels=True)
    elif bundle.task == "classification":
        record.update(probabilities=result.probabilities, prediction=result.prediction,
                      seconds=round(result.seconds, 3))
        if args.output and result.heatmap is not None:
            write_volume(result.heatmap, args.output)
    else:
        record.update(boxes=[box.to_dict() for box in result.boxes], score_threshold=result.score_threshold,
                      seconds=round(result.seconds, 3))
        if not args.json:
            print(f"kept {len(result.boxes)} boxes scoring above {result.score_threshold:g}", file=sys.stderr)
        if args.output:
            from .core._atomic import write_json_atomic

            write_json_atomic(args.output, record)
    if args.output:
        record["output"] = str(args.output)
    print(json.dumps(record) if args.json else _describe(record))
    return 0


def _describe(record: dict) -> str:
    lines = [f"task: {record['task']}"]
    if "volumes_ml" in record:
        lines += [f"  {name:<20} {ml:10.2f} mL" for name, ml in record["volumes_ml"].items()]
    if "probabilities" in record:
        lines += [f"  {name:<20} {p:8.3f}" for name, p in record["probabilities"].items()]
        lines.append(f"prediction: {record['prediction']}")
    if "boxes" in record:
        lines += [f"  {b['label']:<12} {b['score']:.3f}  [" + ", ".join(f"{v:.1f}" for v in b["box_world"]) + "] mm"
                  for b in record["boxes"]]
        lines.append(f"{len(record['boxes'])} boxes")
    if "output" in record:
        lines.append(f"wrote {record['output']}")
    return "\n".join(lines)


def cmd_train(args) -> int:
    from .samples import SAMPLES, UNSHIPPED, train_sample

    options = {k: v for k, v in (("cases", args.cases), ("epochs", args.epochs), ("max_minutes", args.max_minutes))
               if v is not None}
    if args.name not in SAMPLES + UNSHIPPED:
        raise MedvisionError(f"unknown sample model '{args.name}'; choose {', '.join(SAMPLES[:-1])} or {SAMPLES[-1]}")
    job = train_sample(args.name, args.output, seed=args.seed, device=args.device,
                       real_data=Path(args.real_data) if args.real_data else None, **options)
    last = None
    while True:
        try:
            step = next(job)
        except StopIteration as stop:
            metrics = stop.value
            break
        text = step if isinstance(step, str) else _train_line(step)
        if text and text != last:
            print(text, file=sys.stderr)
            last = text
    print(json.dumps(metrics.get("held_out", metrics)))
    return 0


def cmd_finetune(args) -> int:
    from .core.models import find_bundle
    from .core.backend import InProcessBackend
    from .core.training.finetune import FinetuneSettings, check_new_model_dir
    from .core.training.versions import VersionStore

    if args.server:
        return cmd_finetune_server(args)
    if not args.output:
        raise MedvisionError("finetune needs --output NEW_MODEL_DIR (a new bundle folder), or --server URL")
    output = Path(args.output)
    check_new_model_dir(output)
    store = checked_store(args.cases)
    bundle = find_bundle(args.model, trusted=args.trust)
    settings = FinetuneSettings(epochs=args.epochs, max_minutes=args.max_minutes,
                                correction_weight=args.correction_weight,
                                validation_cases=args.validation_cases or None)
    if wants_group(args):
        return cmd_finetune_group(args, bundle, store, output, settings, _drive_training)
    job = InProcessBackend().finetune(bundle, store, VersionStore(output.parent), settings, device=args.device,
                                      output=output)
    result = _drive_training(job, quiet=args.json)
    summary = {"parent": str(bundle.path), **result.summary()}
    print(json.dumps(summary) if args.json else
          f"wrote {summary['version']}: validation Dice {summary['base_dice']} -> {summary['best_dice']} "
          f"(best epoch {summary['best_epoch']}, {summary['seconds']} s)")
    return 0


def cmd_evaluate(args) -> int:
    from .core.models import find_bundle
    from .core.training.finetune import evaluate

    store = checked_store(args.cases)
    bundle = find_bundle(args.model, trusted=args.trust)
    record = _drive_training(evaluate(bundle, store, device=args.device), quiet=args.json)
    if record["skipped"]:
        _warn([f"{len(record['skipped'])} case(s) skipped: "
               + ", ".join(f"{case} ({why})" for case, why in record["skipped"].items())])
    print(json.dumps(record) if args.json else
          "\n".join([f"{k:<20} {v}" for k, v in record["dice"].items()] + [f"mean Dice {record['mean_dice']} "
                                                                           f"over {record['cases']} cases"]))
    return 0


def cmd_versions(args) -> int:
    from .core.training import CaseStore
    from .core.training.finetune import compare_versions
    from .core.training.versions import VersionStore

    store = VersionStore.locate(args.store)
    action = args.action or "list"
    if action == "use":
        record = {"in_use": store.use(args.version).name}
    elif action == "rollback":
        parent = store.rollback()
        record = {"in_use": parent.name if parent else "base"}
    elif action == "delete":
        name = store.get(args.version).name
        store.delete(name)
        record = {"deleted": name}
    elif action == "compare":
        record = _drive_training(compare_versions(store, args.first, args.second, CaseStore(args.cases),
                                                  device=args.device),
                                 quiet=args.json)
    else:
        record = store.summary()
    print(json.dumps(record) if args.json else _describe_versions(action, record, store))
    return 0


def _describe_versions(action: str, record, store) -> str:
    if action == "list":
        if not record:
            return f"no versions in {store.root}"
        return "\n".join(f"{r['version']}  val Dice {r['best_validation_dice']}  {(r['date'] or '')[:16]}"
                         + ("  <- in use" if r["in_use"] else "") for r in record)
    if action == "compare":
        lines = [f"{name:<8} mean Dice {r['mean_dice']}  " + ", ".join(f"{k} {v}" for k, v in r["dice"].items())
                 for name, r in record["versions"].items()]
        return "\n".join(lines + [f"better: {record['better'] or 'neither'} (on {record['cases']} cases)"])
    return f"deleted {record['deleted']}" if action == "delete" else f"in use: {record['in_use']}"


def cmd_demo(args) -> int:
    from ._qt.demo import run_demo

    run_demo(radiograph=args.radiograph)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="medvision", description="Deep learning on medical images (napari-medvision).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    info = commands.add_parser("info", help="size, spacing, origin, direction and modality of a study")
    info.add_argument("path", help="image file or DICOM series folder")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.add_argument("--series", metavar="UID", help="series to read from a DICOM folder (default: largest)")
    info.add_argument("--frame", type=non_negative_int, metavar="K", help="volume to read from a 4D file")
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

    models = commands.add_parser("models", help="list the models the registry finds")
    models.add_argument("--json", action="store_true")
    models.set_defaults(run=cmd_models)

    trust = commands.add_parser("trust", help="bundles trusted in the Run-model dock (remembered by content hash)")
    trust_commands = trust.add_subparsers(dest="trust_command", required=True, parser_class=_Parser)
    trust_list = trust_commands.add_parser("list", help="every remembered bundle")
    trust_list.add_argument("--json", action="store_true")
    trust_revoke = trust_commands.add_parser("revoke", help="forget the trust given to a bundle")
    trust_revoke.add_argument("target", metavar="NAME|HASH", help="bundle name, or content hash (8+ characters)")
    trust.set_defaults(run=cmd_trust)

    infer = commands.add_parser("infer", help="run a model (segmentation, classification or detection)")
    infer.add_argument("--model", required=True,
                       help="registry name, bundle or nnU-Net folder, nnU-Net .zip, or STORE@current / STORE@N")
    infer.add_argument("--input", required=True, action="append",
                       help="image file or DICOM folder; repeat it for a model with several input channels "
                            "(nnU-Net: in its channel_names order); a folder of studies runs them all")
    infer.add_argument("--output", help="label map (.nii.gz/.nrrd/.mha), heatmap image, or boxes .json")
    infer.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    infer.add_argument("--trust", action="store_true", help="allow the bundle to run its own code")
    infer.add_argument("--json", action="store_true")
    infer.add_argument("--series", metavar="UID")
    infer.add_argument("--frame", type=non_negative_int, metavar="K")
    infer.add_argument("--overlap", type=overlap, help="sliding-window overlap (0 <= overlap < 1)")
    infer.add_argument("--sw-batch-size", type=_positive_int, help="windows per forward pass")
    infer.add_argument("--tta", action="store_true", help="average over flips (segmentation)")
    infer.add_argument("--no-tta", action="store_true", help="no mirroring (nnU-Net models mirror by default)")
    infer.add_argument("--folds", nargs="+", metavar="F", help="nnU-Net folds to average (default: all present)")
    infer.add_argument("--checkpoint", choices=("checkpoint_final.pth", "checkpoint_best.pth"),
                       help="nnU-Net checkpoint (default: checkpoint_final.pth where present)")
    infer.add_argument("--min-component-mm3", type=non_negative_float, help="drop label pieces smaller than this")
    infer.add_argument("--backend", default="auto", choices=("auto", "torch", "openvino", "onnxruntime"),
                       help="CPU engine for the windows (segmentation): torch is the reference; auto (default) "
                            "uses an installed exported engine where measured faster on this machine (checked once)")
    infer.add_argument("--exact-postprocessing", action="store_true",
                       help="pre- and postprocessing exactly as written (the bundle's resampling precision, every "
                            "class's scores resampled), not the fast label map (same labels off boundaries)")
    infer.add_argument("--score-threshold", type=fraction, help="lowest box score kept (detection)")
    add_batch_options(infer)
    infer.set_defaults(run=cmd_infer, exit_at_once=True, defer_imports=True)

    train = commands.add_parser("train", help="regenerate a sample model from phantoms (reproducible)")
    train.add_argument("name", help="ct_organs_unet, ct_organs_unetr, lesion_classifier, nodule_detector, "
                                    "interactive_unet or radiograph_classifier (2D)")
    train.add_argument("--output", required=True, help="bundle folder to write")
    train.add_argument("--cases", type=_positive_int, help="training cases (default: the model's own)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--epochs", type=_positive_int, help="most epochs (default: the model's own)")
    train.add_argument("--max-minutes", type=positive_float, help="time limit (default: the model's own)")
    train.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    train.add_argument("--real-data", help="folder of real scans to report on in the model card")
    train.set_defaults(run=cmd_train)

    finetune = commands.add_parser("finetune", help="fine-tune a segmentation model on a case store")
    finetune.add_argument("--model", required=True)
    finetune.add_argument("--cases", required=True, help="case store folder (nnU-Net raw layout)")
    finetune.add_argument("--output", help="new bundle folder (must not exist); required unless --server")
    finetune.add_argument("--epochs", type=_positive_int, default=20)
    finetune.add_argument("--max-minutes", type=positive_float, default=5.0)
    finetune.add_argument("--correction-weight", type=non_negative_float, default=0.0,
                          help="extra loss weight of voxels the user edited (0: off)")
    finetune.add_argument("--validation-cases", nargs="*", metavar="CASE")
    finetune.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    finetune.add_argument("--trust", action="store_true")
    finetune.add_argument("--json", action="store_true")
    add_ddp_options(finetune)
    finetune.set_defaults(run=cmd_finetune)

    evaluate = commands.add_parser("evaluate", help="Dice of a segmentation model on a case store")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--cases", required=True)
    evaluate.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    evaluate.add_argument("--trust", action="store_true")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(run=cmd_evaluate)

    versions = commands.add_parser("versions", help="list fine-tuned versions; use, roll back, compare, delete")
    versions.add_argument("store", help="folder of versions (v001, v002...) or a case store")
    versions.add_argument("--json", action="store_true")
    actions = versions.add_subparsers(dest="action", parser_class=_Parser)
    as_json = _Parser(add_help=False)
    as_json.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    actions.add_parser("list", parents=[as_json], help="every version, the one in use marked (default)")
    actions.add_parser("use", parents=[as_json], help="put version N in use").add_argument("version", metavar="N")
    actions.add_parser("rollback", parents=[as_json], help="put the parent of the version in use in use")
    actions.add_parser("delete", parents=[as_json], help="delete version N (never the one in use)").add_argument(
        "version", metavar="N")
    compare = actions.add_parser("compare", parents=[as_json], help="Dice of two versions on a case store")
    compare.add_argument("first", metavar="A", help="version number, vNNN or 'base'")
    compare.add_argument("second", metavar="B")
    compare.add_argument("--cases", required=True, help="case store folder to evaluate on")
    compare.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    versions.set_defaults(run=cmd_versions)

    add_server_options(models, infer, finetune)
    add_model_commands(commands)
    add_interact_command(commands)
    add_rank_command(commands)
    add_dicom_commands(commands)

    demo = commands.add_parser("demo", help="open napari with a sample study and the plugin's docks")
    demo.add_argument("--radiograph", action="store_true", help="the 2D demo: a chest radiograph and its classifier")
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; ``argv`` None means this process is the ``medvision`` program itself.

    Library warnings (MONAI deprecations, torch notices) and ITK's own warnings stay off stderr:
    they go to the log, shown with ``-v``. Our own warnings are ``warning:`` lines.
    """
    args = build_parser().parse_args(attach_click_values(sys.argv[1:] if argv is None else list(argv)))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    with library_warnings_to_log():
        try:
            with deferred_imports(args):
                code = args.run(args)
        except MedvisionError as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = 2
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            if argv is None:
                exit_now(130)
            return 130
    if argv is None and getattr(args, "exit_at_once", False):
        exit_now(code or 0)  # its outputs are written (atomically); tearing torch and MONAI down is seconds more
    return code


if __name__ == "__main__":
    sys.exit(main())
