"""Building an nnU-Net v2 model's network through nnunetv2, from checkpoints read without unpickling.

This is what ``nnUNetPredictor.initialize_from_trained_model_folder`` does, except that
each checkpoint is read by :func:`~.nnunet.load_checkpoint` (``weights_only=True``) instead
of a full unpickle. Built networks are cached; a run makes its own predictor around them
(``manual_initialization``), so per-run settings (folds, mirroring, device) never change
the cached model.
"""

from __future__ import annotations

import inspect
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import ModelError
from .nnunet import NnUNetModel, import_nnunetv2, load_checkpoint

_CACHE: OrderedDict[tuple, "BuiltNnUNet"] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_SIZE = 2


@dataclass
class BuiltNnUNet:
    """One nnU-Net model built on one device: the network and one state dict per fold.

    ``lock`` is held while a run loads fold weights into ``network`` and predicts.
    """

    network: torch.nn.Module
    plans_manager: Any
    configuration_manager: Any
    parameters: list[dict]
    dataset_json: dict
    trainer_name: str
    mirror_axes: tuple[int, ...] | None
    folds: tuple[str, ...]
    device: torch.device
    lock: threading.Lock = field(default_factory=threading.Lock)


def built_nnunet(model: NnUNetModel, device: torch.device, folds: list[str] | None = None,
                 checkpoint: str | None = None) -> BuiltNnUNet:
    """``model`` built on ``device`` with ``folds`` (default: every fold present), reused while unchanged.

    Raises:
        ModelError: nnunetv2 missing, a fold or checkpoint missing, weights that do not fit.
        UntrustedCodeError: a checkpoint that is not plain data, or plans naming foreign classes.
    """
    folds = [str(f) for f in (folds or model.available_folds(checkpoint))]
    if not folds:
        raise ModelError(f"nnU-Net model '{model.name}' has no fold with a checkpoint")
    paths = [model.checkpoint_path(f, checkpoint) for f in folds]
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
    key = (str(model.path), stamp, str(device), model.trusted)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    built = _build(model, device, folds, paths)
    with _CACHE_LOCK:
        _CACHE[key] = built
        while len(_CACHE) > _SIZE:
            _CACHE.popitem(last=False)
    return built


def _build(model: NnUNetModel, device: torch.device, folds: list[str], paths) -> BuiltNnUNet:
    model.check_architecture()
    predict_module = import_nnunetv2()
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    checkpoints = [load_checkpoint(p) for p in paths]
    first = checkpoints[0]
    trainer_name = str(first["trainer_name"])
    configuration = str(first["init_args"].get("configuration") or model.configuration)
    plans_manager = PlansManager(model.plans)
    if configuration not in model.plans.get("configurations", {}):
        raise ModelError(f"nnU-Net model '{model.name}': its checkpoints were trained with configuration "
                         f"'{configuration}', which plans.json does not define")
    configuration_manager = plans_manager.get_configuration(configuration)
    label_manager = plans_manager.get_label_manager(model.dataset)
    channels = determine_num_input_channels(plans_manager, configuration_manager, model.dataset)
    trainer = _trainer_class(predict_module, trainer_name)
    arguments = (channels, label_manager.num_segmentation_heads)
    if "plans_manager" in inspect.signature(trainer.build_network_architecture).parameters:
        network = trainer.build_network_architecture(plans_manager, configuration_manager, *arguments,
                                                     enable_deep_supervision=False)
    else:  # trainers written for nnunetv2 < 2.6
        network = trainer.build_network_architecture(
            configuration_manager.network_arch_class_name, configuration_manager.network_arch_init_kwargs,
            configuration_manager.network_arch_init_kwargs_req_import, *arguments, enable_deep_supervision=False)
    parameters = [c["network_weights"] for c in checkpoints]
    for fold, state in zip(folds, parameters):
        try:
            network.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelError(f"nnU-Net model '{model.name}': the weights of fold {fold} do not fit the network "
                             f"that plans.json describes ({str(exc).splitlines()[0][:200]})") from None
    network.load_state_dict(parameters[0])
    axes = first.get("inference_allowed_mirroring_axes")
    return BuiltNnUNet(network.to(device).eval(), plans_manager, configuration_manager, parameters, model.dataset,
                       trainer_name, tuple(axes) if axes is not None else None, tuple(folds), device)


def _trainer_class(predict_module, trainer_name: str):
    """The installed trainer class of that name, found by nnunetv2's own lookup."""
    find = getattr(predict_module, "recursive_find_trainer_class_by_name", None)
    try:
        if find is not None:
            trainer = find(trainer_name)
        else:  # nnunetv2 < 2.6
            from os.path import join

            import nnunetv2
            from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

            trainer = recursive_find_python_class(join(nnunetv2.__path__[0], "training", "nnUNetTrainer"),
                                                  trainer_name, "nnunetv2.training.nnUNetTrainer")
    except RuntimeError:
        trainer = None
    if trainer is None:
        raise ModelError(f"the nnU-Net trainer '{trainer_name}' is not installed; install the package that "
                         "defines it (or point nnUNet_extTrainer at it)")
    return trainer


def clear() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
