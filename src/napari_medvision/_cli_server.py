"""``--server URL``: ``models``, ``infer`` and ``finetune`` on a MONAI Label server instead of this machine.

The token is read from ``MEDVISION_SERVER_TOKEN`` only (never an option: command lines are visible to
every user of the machine and kept in shell histories). The jobs are those of the docks' server backend
(``core.remote.backend.MonaiLabelBackend``, a ``ComputeBackend``).
"""

from __future__ import annotations

import json

from ._cli_util import _warn
from ._cli_util import drive as _drive
from .core.errors import MedvisionError


def add_server_options(models, infer, finetune) -> None:
    """Add ``--server`` to the ``models``, ``infer`` and ``finetune`` sub-commands."""
    text = "MONAI Label server URL (token from MEDVISION_SERVER_TOKEN)"
    for command in (models, infer, finetune):
        command.add_argument("--server", metavar="URL", help=text)


def cmd_models_server(args) -> int:
    from .core.remote.monailabel import MonaiLabelClient

    records = MonaiLabelClient(args.server).models()
    if args.json:
        print(json.dumps(records))
        return 0
    if not records:
        print(f"the server at {args.server} offers no models")
    for record in records:
        labels = ", ".join(record["labels"].values())
        trainable = "trainable" if record["trainable"] else ""
        print(f"{record['name']:<32} {'monailabel':<12} {record['task']:<15} {labels}  {trainable}\n"
              f"{'':<32} {record['path']}")
    return 0


def cmd_infer_server(args) -> int:
    from .core.io import read_volume, write_volume
    from .core.remote.backend import MonaiLabelBackend
    from ._cli_checks import check_infer_output

    if len(args.input) != 1:
        raise MedvisionError("a server model takes one --input study")
    check_infer_output(args.output, "segmentation", args.input)
    backend = MonaiLabelBackend(args.server)
    client = backend.client
    record = client.check_model(args.model)
    if record.get("type", "segmentation") != "segmentation":
        raise MedvisionError(f"'{args.model}' on {args.server} is a {record.get('type')} model; "
                             "only segmentation models run from the command line")
    volume = read_volume(args.input[0], series_uid=args.series, frame=args.frame)
    _warn(volume.warnings)
    result = _drive(backend.run_model(args.model, volume), args.json)
    output = {"task": "segmentation", "labels": {str(k): v for k, v in result.label_names.items()},
              "volumes_ml": result.volumes_ml, "seconds": round(result.seconds, 3), "server": client.url}
    if args.output:
        write_volume(result.labels, args.output, labels=True)
        output["output"] = str(args.output)
    if args.json:
        print(json.dumps(output))
    else:
        print("\n".join([f"task: segmentation (on {client.url})"]
                        + [f"  {name:<20} {ml:10.2f} mL" for name, ml in output["volumes_ml"].items()]
                        + ([f"wrote {output['output']}"] if args.output else [])))
    return 0


def cmd_finetune_server(args) -> int:
    from ._cli_checks import checked_store
    from .core.remote.backend import MonaiLabelBackend

    if args.output:
        raise MedvisionError("--output is for a local fine-tune; on a server the new weights stay on the server")
    store = checked_store(args.cases)
    backend = MonaiLabelBackend(args.server)
    backend.client.check_model(args.model, trainer=True)
    result = _drive(backend.finetune(args.model, store, epochs=args.epochs, max_minutes=args.max_minutes), args.json)
    print(json.dumps(result) if args.json else
          f"trained {result['model']} on {result['server']} with {result['cases']} cases: "
          f"{result['metric_name']} {result['metric']}")
    return 0
