"""Segmentation with an nnU-Net v2 model, through nnunetv2's own preprocessing, predictor and export.

The steps are those of ``nnUNetPredictor.predict_single_npy_array`` (preprocess, predict the
logits of every fold, resample back and take labels), called one by one so that the run can
report progress and stop: each step runs in a helper thread while this generator yields
:class:`Progress`; a forward hook on the network counts the windows (mirrored passes
included) and, once the run is closed, stops the prediction at the next window.

The image goes in as nnU-Net's ``SimpleITKIO`` reads a file: the SimpleITK array
``(c, z, y, x)`` as float32 and the spacing reversed to ``(z, y, x)``; the label map comes
back on that same grid, so it takes the input's geometry unchanged. Models planned with
another reader (nibabel, reorienting readers) go through that reader on a temporary file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Generator, Sequence

import numpy as np
import SimpleITK as sitk
import torch

from ..errors import CancelledError, GeometryMismatchError, ModelError
from ..models.device import choose_device
from ..models.nnunet import NnUNetModel, import_nnunetv2
from ..models.nnunet_build import built_nnunet
from ..volume import GEOMETRY_TOLERANCE, Volume
from .cleanup import remove_small_components
from .progress import Progress
from .segmentation import SegmentationResult

log = logging.getLogger(__name__)
_POLL_S = 0.1


def segment_nnunet(model: NnUNetModel, volumes: Volume | Sequence[Volume], *, device: str = "auto",
                   folds: Sequence[str] | None = None, tta: bool | None = None, checkpoint: str | None = None,
                   keep_probabilities: bool = False, min_component_mm3: float = 0.0,
                   ) -> Generator[Progress, None, SegmentationResult]:
    """Segment with ``model``: one volume per input channel, in ``model.channel_names`` order.

    Args:
        folds: folds to average (default: every fold present, as nnU-Net).
        tta: mirroring over the axes the trainer allowed (default on, as nnU-Net; False: ``--disable_tta``).
        checkpoint: ``checkpoint_final.pth`` (default when present) or ``checkpoint_best.pth``.
        keep_probabilities: also return nnU-Net's probabilities ``(C, z, y, x)`` on the input grid.
        min_component_mm3: drop connected pieces of a label smaller than this.

    Raises:
        ModelError: wrong number of channels (naming them), missing fold, nnunetv2 not installed.
        GeometryMismatchError: channels that do not share one grid.
    """
    start = time.perf_counter()
    volumes = [volumes] if isinstance(volumes, Volume) else list(volumes)
    reference = _check_channels(model, volumes)
    torch_device = choose_device(device)
    yield Progress(0, 1, f"loading {model.name}")
    built = yield from _threaded(lambda: built_nnunet(model, torch_device, list(folds) if folds else None,
                                                      checkpoint), "loading nnU-Net model")
    predict_module = import_nnunetv2()
    from nnunetv2.inference.data_iterators import PreprocessAdapterFromNpy
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

    with built.lock:
        predictor = _predictor(predict_module, built, torch_device, True if tta is None else tta)
        reader = model.plans.get("image_reader_writer", "SimpleITKIO")
        with _reader_input(reader, volumes) as (image, properties, restore):
            adapter = PreprocessAdapterFromNpy([image], [None], [properties], [None], built.plans_manager,
                                               built.dataset_json, built.configuration_manager,
                                               num_threads_in_multithreaded=1, verbose=False)
            batch = yield from _threaded(lambda: next(adapter), "preprocessing")
            total = _forward_passes(predictor, built, batch["data"].shape[1:])
            counter = _Counter(total)
            hook = built.network.register_forward_pre_hook(counter.hook)
            threads = torch.get_num_threads()  # nnU-Net changes it and, when stopped, does not put it back
            try:
                label = f"predicting ({len(built.folds)} fold{'s' if len(built.folds) > 1 else ''})"
                logits = yield from _threaded(lambda: predictor.predict_logits_from_preprocessed_data(batch["data"]),
                                              label, counter)
            finally:
                hook.remove()
                torch.set_num_threads(threads)
            output = yield from _threaded(lambda: convert_predicted_logits_to_segmentation_with_correct_shape(
                logits.cpu(), built.plans_manager, built.configuration_manager, predictor.label_manager,
                batch["data_properties"], return_probabilities=keep_probabilities), "resampling to the image")
            labels, probabilities = output if keep_probabilities else (output, None)
            labels = restore(labels)
    if labels.shape != reference.shape:
        raise ModelError(f"nnU-Net returned shape {labels.shape}, not the image's {reference.shape}")
    if min_component_mm3 > 0:
        labels = remove_small_components(labels, min_component_mm3 / float(np.prod(reference.spacing)))
    names = dict(model.labels)
    result = SegmentationResult(reference.with_array(labels, model=model.name), names)
    if keep_probabilities and probabilities is not None and reader == "SimpleITKIO":
        result.probabilities = np.asarray(probabilities, dtype=np.float32)
    if tta is None and built.mirror_axes:
        log.info("mirroring over axes %s (nnU-Net's default)", list(built.mirror_axes))
    voxel_ml = float(np.prod(reference.spacing)) / 1000.0
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=max(names, default=0) + 1)
    result.volumes_ml = {name: round(float(counts[v]) * voxel_ml, 3) for v, name in names.items() if v < len(counts)}
    result.seconds = time.perf_counter() - start
    yield Progress(1, 1, "done")
    return result


def _check_channels(model: NnUNetModel, volumes: list[Volume]) -> Volume:
    """The first volume, after checking the count and that all share its grid."""
    expected = model.channel_names
    if len(volumes) != len(expected):
        raise ModelError(f"'{model.name}' takes {len(expected)} input image(s), one per channel in this order: "
                         f"{', '.join(expected)}; got {len(volumes)} (repeat --input, or pick a layer per channel)")
    first = volumes[0]
    for name, other in zip(expected[1:], volumes[1:]):
        same = (other.shape == first.shape and np.allclose(other.spacing, first.spacing, atol=GEOMETRY_TOLERANCE))
        if not same:
            raise GeometryMismatchError(f"channel '{name}' ({other.shape}, spacing {other.spacing}) is not on the "
                                        f"grid of channel '{expected[0]}' ({first.shape}, spacing {first.spacing}); "
                                        "resample it first")
    return first


def _predictor(predict_module, built, device, mirroring: bool):
    """A fresh nnUNetPredictor around the cached network (nnUNetv2_predict's defaults)."""
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):  # it prints a note about CPU devices
        predictor = predict_module.nnUNetPredictor(
            tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
            perform_everything_on_device=device.type == "cuda", device=device, verbose=False, allow_tqdm=False)
        predictor.manual_initialization(built.network, built.plans_manager, built.configuration_manager,
                                        built.parameters, built.dataset_json, built.trainer_name, built.mirror_axes)
    if quiet.getvalue().strip():
        log.debug("nnunetv2: %s", quiet.getvalue().strip())
    return predictor


def _forward_passes(predictor, built, shape) -> int:
    """Network calls the prediction will make: windows x mirror combinations x folds."""
    patch = list(built.configuration_manager.patch_size)
    padded = list(shape[:len(shape) - len(patch)]) + [max(s, p) for s, p in zip(shape[-len(patch):], patch)]
    windows = len(predictor._internal_get_sliding_window_slicers(tuple(padded)))
    axes = predictor.allowed_mirroring_axes if predictor.use_mirroring else None
    return windows * (2 ** len(axes) if axes else 1) * len(built.folds)


class _Counter:
    """Counts network calls; raises in the predicting thread once cancelled."""

    def __init__(self, total: int):
        self.total, self.done = total, 0
        self.cancelled = threading.Event()

    def hook(self, module, inputs) -> None:
        if self.cancelled.is_set():
            raise CancelledError("the nnU-Net run was stopped")
        self.done += 1


def _threaded(function: Callable, message: str, counter: _Counter | None = None):
    """Run ``function`` in a thread, yielding progress until it returns; closing stops it at the next window."""
    box: dict = {}

    def work():
        try:
            box["value"] = function()
        except BaseException as exc:  # handed to the generator's thread below
            box["error"] = exc

    thread = threading.Thread(target=work, name="medvision-nnunet", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(_POLL_S)
            if counter is not None:
                yield Progress(min(counter.done, counter.total), counter.total, message)
            else:
                yield Progress(0, 1, message)
    finally:
        if thread.is_alive():  # the generator was closed (Cancel): stop at the next window, then wait
            if counter is not None:
                counter.cancelled.set()
            thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


@contextlib.contextmanager
def _reader_input(reader: str, volumes: list[Volume]):
    """``(image (c, ...), properties, restore)`` as the model's image reader would give them.

    ``restore`` turns the label map nnU-Net returns into a ``(z, y, x)`` array on the input grid.
    """
    if reader == "SimpleITKIO":
        image = np.stack([v.array for v in volumes]).astype(np.float32, copy=False)
        spacing = [float(s) for s in np.abs(volumes[0].spacing[::-1])]
        yield image, {"spacing": spacing}, lambda labels: np.asarray(labels)
        return
    from nnunetv2.imageio.reader_writer_registry import recursive_find_reader_writer_by_name

    io_class = recursive_find_reader_writer_by_name(reader)()
    with tempfile.TemporaryDirectory(prefix="medvision-nnunet-") as folder:
        files = []
        for index, volume in enumerate(volumes):
            files.append(str(Path(folder) / f"case_{index:04d}.nii.gz"))
            sitk.WriteImage(volume.to_sitk(), files[-1])
        image, properties = io_class.read_images(files)

        def restore(labels):
            out = str(Path(folder) / "labels.nii.gz")
            io_class.write_seg(np.asarray(labels), out, properties)
            back = sitk.ReadImage(out)
            return Volume.from_sitk(back).array

        yield image, properties, restore
