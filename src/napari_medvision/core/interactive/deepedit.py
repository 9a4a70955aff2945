"""DeepEdit-style Model Zoo bundles (``spleen_deepedit_annotation``) as an interactive engine.

Such a bundle's ``preprocessing`` turns clicks into guidance: ``AddGuidanceFromPointsDeepEditd``
reads, for each name of its ``label_names``, a list of clicks from the data dict under that
name (voxel indices of the image as ``LoadImaged`` gives it: ``(x, y, z)``), and
``AddGuidanceSignalDeepEditd`` appends one Gaussian channel per label name to the image. The
network sees ``image + guidance`` and returns one channel per label; the bundle's
``postprocessing`` (softmax, ``Invertd``, argmax) takes the label map back to the source grid.

Everything here is the bundle's own: its transforms, network, inferer and postprocessing
(built by :meth:`..models.Bundle.build`, through the trust gate). Positive clicks become the
clicks of the structure's label name, negative clicks those of ``background``.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..errors import ModelError
from ..volume import Volume
from .base import InteractiveEngine
from .prompts import Prompts

log = logging.getLogger(__name__)


class BundleEngine(InteractiveEngine):
    """What the zoo engines share: a bundle, built once per device (cached), on 3D images only."""

    style = "bundle"

    def __init__(self, bundle, device: str = "auto", label: str | None = None):
        self.bundle = bundle
        self.device = device
        self.label = label
        self.name = bundle.name
        self.description = f"{self.style} bundle '{bundle.display_name}' (the Model Zoo's own format)"

    def fits(self, image: np.ndarray, spacing_xyz) -> bool:
        return image.ndim == 3 and image.shape[0] > 1

    def segment(self, image: np.ndarray, spacing_xyz, prompts: Prompts) -> np.ndarray:
        """Without geometry the image is taken as axis-aligned (identity direction, origin 0)."""
        return self.segment_volume(Volume(np.asarray(image), spacing=tuple(float(s) for s in spacing_xyz)), prompts)

    def loaded(self):
        """The built bundle (network, transforms) on this engine's device, reused between clicks."""
        from ..models import choose_device
        from ..models.cache import loaded_model

        if self.bundle.spatial_dims != 3:
            raise ModelError(f"'{self.bundle.name}' is not a 3D model; interactive bundles segment 3D images")
        return loaded_model(self.bundle, choose_device(self.device))

    def preprocess(self, model, data: dict) -> dict:
        """The bundle's preprocessing of ``data``, run as the transform its ``Invertd`` will invert.

        A config may give ``Invertd`` a copy (VISTA3D: ``$copy.deepcopy(@preprocessing)``); MONAI
        inverts only the transform objects that ran, so the copy is the one to run.
        """
        from types import SimpleNamespace

        from ..inference.convert import run_preprocessing

        return run_preprocessing(SimpleNamespace(preprocessing=inverted_preprocessing(model)), data, self.bundle.name)

    def check_image(self, volume: Volume) -> None:
        if not self.fits(volume.array, volume.spacing):
            raise ModelError(f"'{self.bundle.name}' segments 3D images; this one has shape {volume.shape}")


class DeepEditEngine(BundleEngine):
    """Clicks per label name -> guidance channels -> the bundle's network -> the structure's mask."""

    style = "DeepEdit"

    def label_names(self, model) -> dict[str, int]:
        """``label_names`` of the bundle's ``AddGuidanceFromPointsDeepEditd`` (name -> output channel)."""
        from monai.apps.deepedit.transforms import AddGuidanceFromPointsDeepEditd

        for transform in _flat(model.preprocessing):
            if isinstance(transform, AddGuidanceFromPointsDeepEditd) and transform.label_names:
                return {str(k): int(v) for k, v in transform.label_names.items()}
        raise ModelError(f"'{self.bundle.name}' has no AddGuidanceFromPointsDeepEditd with label_names "
                         "in its preprocessing: it is not a DeepEdit annotation bundle")

    def clicks(self, names: dict[str, int], prompts: Prompts) -> dict[str, list[list[int]]]:
        """Clicks per label name, as ``(x, y, z)`` indices (``LoadImaged``'s axis order).

        A box without positive clicks gives one positive click at its centre.
        """
        target = self.label or first_foreground(names)
        if target not in names:
            raise ModelError(f"'{self.bundle.name}' has no label '{target}'; it has {', '.join(names)}")
        positive = [list(map(int, p[::-1])) for p in prompts.positive]
        if not positive and prompts.box is not None:
            positive = [list(map(int, ((prompts.box[0] + prompts.box[1]) // 2)[::-1]))]
        clicks = {name: [] for name in names}
        clicks[target] = positive
        background = next((n for n, v in names.items() if int(v) == 0 or n.lower() == "background"), None)
        if background is not None:
            clicks[background] = [list(map(int, p[::-1])) for p in prompts.negative]
        return clicks

    def segment_volume(self, volume: Volume, prompts: Prompts) -> np.ndarray:
        """Mask ``(z, y, x)`` uint8 of the structure, on ``volume``'s grid (clipped to the box, if any)."""
        from ..inference.convert import to_metatensor

        self.check_image(volume)
        prompts.check(volume.shape)
        model = self.loaded()
        names = self.label_names(model)
        data = {"image": to_metatensor(volume), **self.clicks(names, prompts)}
        data = self.preprocess(model, data)
        batch = data["image"].as_tensor()[None].to(model.device)
        with torch.no_grad():
            logits = model.inferer(batch, model.network) if model.inferer is not None else model.network(batch)
        labels = postprocess(model, data, logits[0])
        target = self.label or first_foreground(names)
        return clip_to_box((labels == names[target]).astype(np.uint8), prompts)


def postprocess(model, data: dict, prediction: torch.Tensor) -> np.ndarray:
    """The bundle's postprocessing of one prediction ``(C, *spatial)``: a label map ``(z, y, x)`` on the source grid.

    Without a postprocessing, or one that leaves several channels, the channels' argmax is taken.
    """
    from monai.data import MetaTensor
    from monai.transforms import Invertd

    from ..inference.convert import to_zyx

    image = data["image"]
    data["pred"] = MetaTensor(prediction.detach().cpu().float(), meta=image.meta,
                              applied_operations=image.applied_operations)
    try:
        if model.postprocessing is not None:
            out = model.postprocessing(data)["pred"]
        else:
            out = Invertd(keys="pred", transform=model.preprocessing, orig_keys="image", nearest_interp=False)(data)["pred"]
    except Exception as exc:  # MONAI wraps every transform error in a RuntimeError
        cause = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        log.info("postprocessing failed", exc_info=exc)
        raise ModelError(f"the bundle's postprocessing failed: {type(cause).__name__}: "
                         f"{(str(cause).strip().splitlines() or [''])[0]}") from None
    out = torch.as_tensor(out)
    if out.shape[0] > 1:
        out = out.argmax(0, keepdim=True)
    return np.rint(to_zyx(out.float())[0]).astype(np.int32)


def inverted_preprocessing(model):
    """The transform the postprocessing's first ``Invertd`` inverts, or the preprocessing itself."""
    from monai.transforms import Invertd

    for transform in _flat(model.postprocessing):
        if isinstance(transform, Invertd) and transform.transform is not None:
            return transform.transform
    return model.preprocessing


def clip_to_box(mask: np.ndarray, prompts: Prompts) -> np.ndarray:
    """``mask`` with everything outside ``prompts.box`` cleared (unchanged without a box)."""
    if prompts.box is None:
        return mask
    inside = np.zeros_like(mask)
    region = tuple(slice(int(a), int(b) + 1) for a, b in zip(prompts.box[0], prompts.box[1]))
    inside[region] = mask[region]
    return inside


def first_foreground(names: dict[str, int]) -> str:
    """The first label name that is not background (the structure positive clicks point at)."""
    for name, value in names.items():
        if int(value) != 0 and name.lower() != "background":
            return name
    raise ModelError(f"the bundle names no label besides background ({', '.join(names)})")


def _flat(transform) -> list:
    """Every transform of a (nested) ``Compose``, in order."""
    from monai.transforms import Compose

    if isinstance(transform, Compose):
        return [t for inner in transform.transforms for t in _flat(inner)]
    return [transform] if transform is not None else []
