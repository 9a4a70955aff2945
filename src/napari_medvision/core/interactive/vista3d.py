"""VISTA3D-style Model Zoo bundles (``vista3d``) as an interactive engine: point prompts to the network.

The bundle's ``preprocessing`` (resampling, foreground crop, ``VistaPreTransformd``, intensity
scaling, reorientation) and ``postprocessing`` (``VistaPostTransformd``, which keeps the pieces
holding a positive point, and ``Invertd``) run as written. Between them, what the zoo's
evaluator does with ``points`` + ``point_labels`` is done with MONAI's own pieces: the points
(voxel indices of the image as ``LoadImaged`` gives it, ``(x, y, z)``) are carried into the
preprocessed grid through the image's affines, and
:func:`monai.apps.vista3d.inferer.point_based_window_inferer` runs the network on windows
centred on them (``roi_size`` from the bundle's inferer or ``patch_size``).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ModelError
from ..volume import Volume
from .deepedit import BundleEngine, clip_to_box, postprocess
from .prompts import Prompts

_DEFAULT_ROI = (128, 128, 128)


class Vista3dEngine(BundleEngine):
    """Positive / negative points -> VISTA3D's point head -> the structure's mask (a zero-shot prompt)."""

    style = "VISTA3D"

    def roi_size(self, model) -> tuple[int, int, int]:
        """Window size: the bundle's inferer's ``roi_size``, else its ``patch_size``, else 128³."""
        roi = getattr(model.inferer, "roi_size", None) or self.bundle.config.get("patch_size") or _DEFAULT_ROI
        if not (isinstance(roi, (list, tuple)) and len(roi) == 3 and all(isinstance(v, int) for v in roi)):
            raise ModelError(f"'{self.bundle.name}': cannot read a window size (roi_size / patch_size) from its config")
        return tuple(roi)

    def segment_volume(self, volume: Volume, prompts: Prompts) -> np.ndarray:
        """Mask ``(z, y, x)`` uint8 of the structure, on ``volume``'s grid (clipped to the box, if any)."""
        from monai.apps.vista3d.inferer import point_based_window_inferer

        from ..inference.convert import to_metatensor

        self.check_image(volume)
        prompts.check(volume.shape)
        model = self.loaded()
        points, labels = _points(prompts)
        data = self.preprocess(model, {"image": to_metatensor(volume), "points": points.tolist(),
                                       "point_labels": labels.tolist(), "label_prompt": None})
        image = data["image"]
        coords = torch.as_tensor(to_network_grid(points, image), dtype=torch.float32)[None]
        point_labels = torch.as_tensor(np.asarray(data.get("point_labels", labels)), dtype=torch.long).reshape(1, -1)
        batch = image.as_tensor()[None].to(model.device)
        with torch.no_grad():
            logits = point_based_window_inferer(batch, self.roi_size(model), model.network, coords.to(model.device),
                                                point_labels.to(model.device), transpose=True)
        data.update(points=coords, point_labels=point_labels, label_prompt=None)
        out = postprocess(model, data, torch.nan_to_num(logits[0].float(), nan=-1.0))
        return clip_to_box((out == 1).astype(np.uint8), prompts)


def _points(prompts: Prompts) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 3)`` ``(x, y, z)`` indices and ``(N,)`` labels (1 positive, 0 negative); a box alone gives
    its centre as the one positive point."""
    positive = prompts.positive
    if not len(positive) and prompts.box is not None:
        positive = ((prompts.box[0] + prompts.box[1]) // 2)[None]
    zyx = np.vstack([positive, prompts.negative]).astype(float)
    return zyx[:, ::-1].copy(), np.r_[np.ones(len(positive), int), np.zeros(len(prompts.negative), int)]


def to_network_grid(points_xyz: np.ndarray, image) -> np.ndarray:
    """Voxel indices of the loaded image -> indices of the preprocessed ``image`` (a MetaTensor),
    through ``inv(affine) @ original_affine``, as the zoo's evaluator moves its points."""
    from monai.transforms.utils import apply_affine_to_points

    to_new = np.linalg.inv(np.asarray(image.affine, float)) @ np.asarray(image.meta["original_affine"], float)
    moved = apply_affine_to_points(torch.as_tensor(points_xyz, dtype=torch.float64)[None],
                                   torch.as_tensor(to_new), dtype=torch.float64)[0]
    return np.rint(moved.numpy())
