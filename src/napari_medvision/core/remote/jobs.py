"""Long work on a MONAI Label server as generators, like the local engines: they yield
:class:`~..inference.Progress` (or text), can be stopped between yields, and return a result.

Nothing local changes until the server's answer has been checked: a lost connection or a refused
request is a :class:`~.monailabel.ServerError` and the study, its layers and the case store stay as
they were.
"""

from __future__ import annotations

import time
from typing import Generator

import numpy as np

from ..inference.progress import Progress
from ..inference.segmentation import SegmentationResult
from ..volume import Volume
from .monailabel import MonaiLabelClient, ServerError

FINISHED = ("DONE", "ERROR", "STOPPED", "FAILED")


def server_segment(client: MonaiLabelClient, model: str, volume: Volume) -> Generator[Progress, None,
                                                                                       SegmentationResult]:
    """Segment ``volume`` with the server's ``model``.

    Returns:
        The local engines' ``SegmentationResult``: the label map (z, y, x) with the study's exact
        geometry, label names, volumes in mL (no probabilities or uncertainty: the server sends none).
    """
    start = time.perf_counter()
    yield Progress(0, 2, f"asking {client.url} for {model}")
    names = client.labels(model)
    yield Progress(1, 2, f"{model} running on {client.url}")
    labels = client.infer(model, volume)
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0
    counts = np.bincount(labels.array.ravel().astype(np.int64), minlength=max(names, default=0) + 1)
    volumes = {name: round(float(counts[value]) * voxel_ml, 3) for value, name in names.items() if value < len(counts)}
    yield Progress(2, 2, "done")
    return SegmentationResult(labels, names, volumes_ml=volumes, seconds=time.perf_counter() - start,
                              notes=[f"segmented on {client.url} by {model}"])


def upload_cases(client: MonaiLabelClient, model: str, store) -> Generator[str, None, list[str]]:
    """Upload each complete case of ``store`` (image, and its label as ``final``); returns the case ids.

    Labels are matched to the server model's labels by name (case-insensitive): a value of the case
    store whose name the model has becomes the model's value, any other becomes background.

    Raises:
        ServerError: the model shares no label name with the case store.
    """
    cases = store.check().case_ids()
    if not cases:
        raise ServerError(f"the case store '{store.root}' has no complete cases to upload")
    mapping = label_mapping(store.label_names(), client.labels(model))
    if not mapping:
        raise ServerError(f"the server's '{model}' labels ({', '.join(client.labels(model).values())}) share no "
                          f"name with the case store's ({', '.join(store.label_names().values())}); nothing was uploaded")
    for number, case_id in enumerate(cases):
        image, label = store.read_case(case_id)
        mapped = np.zeros(label.shape, np.uint8)
        for ours, theirs in mapping.items():
            mapped[label.array == ours] = theirs
        client.add_image(case_id, image)
        client.save_label(case_id, label.with_array(mapped))
        yield f"uploaded case {number + 1}/{len(cases)}: {case_id}"
    return cases


def server_finetune(client: MonaiLabelClient, model: str, store, *, epochs: int = 1, params: dict | None = None,
                    poll_seconds: float = 2.0, max_minutes: float = 60.0) -> Generator[str, None, dict]:
    """Upload ``store``, train ``model`` on the server, follow it; returns the server's result.

    Returns:
        ``{"model", "server", "cases", "status", "metric", "metric_name", "seconds"}`` where ``metric``
        is the server's best validation metric (MONAI Label: mean Dice), None if it reports none.

    Raises:
        ServerError: training failed on the server (its last log line quoted) or ran past ``max_minutes``.
    """
    start = time.perf_counter()
    client.check_model(model, trainer=True)
    cases = yield from upload_cases(client, model, store)
    request = {"max_epochs": int(epochs), **(params or {})}
    task = client.train(model, request)
    yield f"training {model} on {client.url} ({epochs} epoch(s))"
    status = task
    try:
        while True:
            status = client.train_status() or {}
            if status.get("id") == task.get("id") and status.get("status") in FINISHED:
                break
            if (time.perf_counter() - start) / 60 > max_minutes:
                client.stop_training()
                raise ServerError(f"training on {client.url} ran past {max_minutes:g} minutes and was stopped")
            yield f"training on the server: {status.get('status', 'waiting')}"
            time.sleep(poll_seconds)
    except GeneratorExit:       # cancelled by the user: stop the server's run too
        client.stop_training()
        raise
    if status.get("status") != "DONE":
        details = [line for line in status.get("details") or [] if line.strip()]
        raise ServerError(f"training '{model}' on {client.url} ended {status.get('status')}: "
                          f"{details[-1].strip()[:200] if details else 'no detail'}")
    stats = (client.info(refresh=True).get("train_stats") or {}).get(model) or {}
    evaluation = stats.get("eval") or {}
    return {"model": model, "server": client.url, "cases": len(cases), "status": "DONE",
            "metric": stats.get("best_metric"), "metric_name": evaluation.get("key_metric_name", "best_metric"),
            "epochs": stats.get("total_epochs", epochs), "seconds": round(time.perf_counter() - start, 1)}


def label_mapping(ours: dict[int, str], theirs: dict[int, str]) -> dict[int, int]:
    """Our label value -> the server's, for the names both have (case-insensitive)."""
    by_name = {name.lower(): value for value, name in theirs.items()}
    return {value: by_name[name.lower()] for value, name in ours.items() if value and name.lower() in by_name}
