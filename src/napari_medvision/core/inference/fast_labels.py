"""Label maps without taking every class's scores back to the image's grid.

A segmentation bundle's postprocessing is most often ``Activationsd(softmax)``, ``Invertd`` (the
preprocessing's resampling undone, scores interpolated linearly) and ``AsDiscreted(argmax)``: it
resamples all C score channels to the image's grid before keeping one number per voxel. For a
100+ class model that is C full-size float32 volumes (10 GB for a 300x300x250 CT). The same label
map is, to within the voxels on a label boundary, the argmax taken on the model's grid and that
single channel taken back with nearest-neighbour interpolation: this module does that, with MONAI's
own ``Invertd`` and the bundle's own preprocessing, and runs the bundle's remaining postprocessing
(what comes after its argmax) unchanged.

It applies only when every step up to the argmax is one of those three (activations being monotone,
the argmax is the same before or after them); any other step, or none of them matching, and the
caller runs the bundle's postprocessing exactly as written (:func:`plan` returns None).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from monai.data import MetaTensor
from monai.data.utils import to_affine_nd
from monai.transforms import Activationsd, AsDiscreted, Compose, EnsureTyped, Invertd

from . import separable

log = logging.getLogger(__name__)
_KEY = "pred"
#: Voxels per piece of the argmax (a (C, piece) block of scores is read at a time).
_PIECE_VOXELS = 1 << 21
#: Up to this many classes, :func:`direct` interpolates the scores at every voxel.
_FEW_CLASSES = 4
#: Recorded steps that interpolate (their ``extra_info["mode"]`` is an interpolation mode).
_INTERPOLATING = frozenset({"Resize", "SpatialResample", "Affine", "Zoom", "Rotate"})


@dataclass
class FastPlan:
    """How to make the label map: argmax on the model's grid, nearest inversion, then ``rest``.

    Attributes:
        invert: whether the bundle's steps undo the preprocessing (an ``Invertd``) before its argmax.
        rest: the bundle's postprocessing after its argmax (a Compose of MONAI's own transforms), or None.
        exact: True when the bundle itself inverts with nearest interpolation (or not at all):
            the label map is then the bundle's as it is; otherwise the voxels between model voxels of
            different labels are recomputed from the interpolated scores (:func:`refine`).
        activation: ``"softmax"`` / ``"sigmoid"`` when the bundle activates before it inverts (the
            scores it interpolates are then probabilities), else None.
    """

    invert: bool
    rest: Compose | None
    exact: bool
    activation: str | None = None


def plan(postprocessing, preprocessing) -> FastPlan | None:
    """The fast plan for a bundle's ``postprocessing`` (SaveImage already dropped), or None.

    ``postprocessing`` None (the bundle gives none) plans our own default: invert, then argmax.
    """
    if postprocessing is None:
        return FastPlan(invert=True, rest=None, exact=False)
    if not isinstance(postprocessing, Compose):
        return None
    steps = postprocessing.flatten().transforms
    invert = exact = activation = None
    for index, step in enumerate(steps):
        if isinstance(step, EnsureTyped) and _only_pred(step):
            continue
        if isinstance(step, Activationsd) and _monotone(step):
            if invert is None:
                activation = "softmax" if any(step.softmax) else "sigmoid" if any(step.sigmoid) else None
            continue
        if isinstance(step, Invertd) and invert is None and _plain_invert(step, preprocessing):
            invert, exact = True, all(step.nearest_interp)
            continue
        if isinstance(step, AsDiscreted) and _plain_argmax(step):
            rest = Compose(list(steps[index + 1:])) if index + 1 < len(steps) else None
            if rest is not None and any(isinstance(t, Invertd) for t in rest.transforms) and invert:
                return None  # inverted twice: leave such a chain as it is
            return FastPlan(invert=bool(invert), rest=rest, exact=exact is not False, activation=activation)
        return None  # a step whose effect on the scores this module does not know
    return None  # no argmax: the bundle gives something other than a label map


def fits(fast: FastPlan, applied) -> bool:
    """Whether ``fast`` gives the bundle's labels for a sample whose preprocessing recorded ``applied``.

    A plan that refines (the bundle inverts its scores with interpolation) reproduces a *linear*
    inversion only: a step that resampled otherwise (``Resized``' default ``area``, a spline...) is
    inverted by MONAI with that mode, so the caller runs the bundle's postprocessing as written.
    """
    if fast.exact or not fast.invert:
        return True
    for op in applied or []:
        if not isinstance(op, dict) or op.get("class") not in _INTERPOLATING:
            continue
        mode = op.get("extra_info", {}).get("mode")
        if not (mode == 1 or str(mode).lower() in ("linear", "bilinear", "trilinear")):
            return False
    return True


def label_map(scores: torch.Tensor, data: dict, preprocessing, fast: FastPlan,
              source_affine: torch.Tensor | None = None, source_shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """The label map ``(1, *image grid)`` of ``scores`` ``(C, *model grid)`` by ``fast``.

    Args:
        scores: the network's blended output for one image (logits or log-probabilities), float;
            overwritten (activated in place) when the label map is refined.
        data: the preprocessed sample: ``data["image"]``'s metadata and applied operations are what
            ``Invertd`` undoes (its voxels are not read).
        preprocessing: the bundle's preprocessing (the transform ``Invertd`` inverts).
        source_affine / source_shape: the image's own index-to-world affine and spatial shape, for
            :func:`direct` and :func:`refine` (None: nearest neighbour only).

    Returns:
        A float32 tensor of label values on the image's grid (or the model's, when nothing inverts).
    """
    image = data["image"]
    labels = argmax_labels(scores)
    meta = getattr(image, "meta", {})
    applied = getattr(image, "applied_operations", [])
    grid_affine = getattr(image, "affine", None)
    if (fast.invert and not fast.exact and fast.rest is None and source_affine is not None
            and source_shape is not None and grid_affine is not None and _affine_only(applied)):
        to_grid = _to_grid(grid_affine, source_affine, scores.ndim - 1)
        return direct(labels[0], _activated(scores, fast.activation), to_grid, source_shape)
    out = {**data, _KEY: MetaTensor(labels.float(), meta=meta, applied_operations=applied)}
    if fast.invert and preprocessing is not None:
        out = Invertd(keys=_KEY, transform=preprocessing, orig_keys="image", nearest_interp=True)(out)
        if not fast.exact and source_affine is not None and grid_affine is not None:
            refine(out[_KEY], labels[0], _activated(scores, fast.activation),
                   _to_grid(grid_affine, source_affine, scores.ndim - 1))
    del labels
    if fast.rest is not None:
        out = fast.rest(out)
    return out[_KEY]


def _to_grid(grid_affine: torch.Tensor, source_affine: torch.Tensor, dims: int) -> torch.Tensor:
    """Image voxel index -> model grid index, ``(dims + 1)`` square (a picture's 2D image may carry a 4x4
    affine and its preprocessed grid a 3x3 one: both are brought to ``dims`` by MONAI's ``to_affine_nd``)."""
    grid = to_affine_nd(dims, torch.as_tensor(grid_affine).double())
    source = to_affine_nd(dims, torch.as_tensor(source_affine).double())
    return torch.linalg.inv(grid) @ source


def direct(grid_labels: torch.Tensor, scores: torch.Tensor, to_grid: torch.Tensor, image_shape) -> torch.Tensor:
    """The label map on the image's grid straight from the model's, for a preprocessing that only
    reorients and resamples with border padding (:func:`_affine_only`): what ``Invertd`` then argmax
    would give, without a float map or a sampling grid the size of the image.

    Each image voxel takes the label its surrounding model voxels share, or, where they differ, the
    argmax of the scores interpolated at its position (as :func:`refine`). Returns ``(1, *image_shape)``
    in ``grid_labels``' integer type.
    """
    if scores.shape[0] <= _FEW_CLASSES and separable.axis_aligned(to_grid):  # the same, an axis at a time
        return separable.label_map(scores, to_grid, image_shape, grid_labels.dtype)
    size = torch.tensor(grid_labels.shape, dtype=torch.float64)
    image_shape = tuple(int(n) for n in image_shape)
    labels = torch.empty((1, *image_shape), dtype=grid_labels.dtype)
    flat = labels.view(-1)
    per_slab = max(1, math.prod(image_shape[1:]))
    step = max(1, _PIECE_VOXELS // per_slab)
    for start in range(0, image_shape[0], step):
        index = _indices(start, min(start + step, image_shape[0]), image_shape)
        position = to_grid[:-1, :-1] @ index + to_grid[:-1, -1:]
        del index
        position = torch.minimum(position.clamp_min(0), size[:, None] - 1)  # border padding
        offset = start * per_slab
        if scores.shape[0] <= _FEW_CLASSES:  # interpolating every voxel costs less than finding which need it
            todo = torch.arange(position.shape[1])
        else:
            corners = _corner_labels(grid_labels, position)
            flat[offset:offset + position.shape[1]] = corners[0]
            todo = torch.nonzero((corners != corners[:1]).any(dim=0)).flatten()
            del corners
        for piece in todo.split(1 << 18):
            flat[offset + piece] = _interpolated_argmax(scores, position[:, piece]).to(flat.dtype)
    return labels


def _affine_only(applied) -> bool:
    """Whether the recorded spatial steps are reorientations and border-padded resamplings only."""
    for op in applied:
        name = op.get("class", "") if isinstance(op, dict) else ""
        extra = op.get("extra_info", {}) if isinstance(op, dict) else {}
        if name == "Orientation":
            continue
        if name == "SpatialResample" and extra.get("padding_mode") == "border":
            continue
        return False
    return True


def refine(labels: torch.Tensor, grid_labels: torch.Tensor, scores: torch.Tensor, to_grid: torch.Tensor) -> int:
    """Give the image voxels that lie between model voxels of different labels their exact label, in place.

    A voxel whose 8 surrounding model voxels share one label keeps it: any linear interpolation of
    scores that all rank that label first ranks it first too. The others take the argmax of the
    scores interpolated at their position (trilinear, borders clamped: what ``Invertd`` computes for
    every voxel and every class). Only those voxels are computed, a slab of the image at a time.

    Args:
        labels: ``(1, *image grid)`` nearest-neighbour label map (float), changed in place.
        grid_labels: ``(*model grid)`` argmax on the model's grid.
        scores: ``(C, *model grid)`` the scores the bundle interpolates (activated as it does).
        to_grid: 4x4 affine from image voxel index to model grid index.

    Returns:
        How many voxels were recomputed. None are when the nearest-neighbour map does not fit the
        affine (a preprocessing whose inverse this reasoning does not cover): logged, labels kept.
    """
    size = torch.tensor(grid_labels.shape, dtype=torch.float64)
    image_shape = labels.shape[1:]
    per_slab = max(1, math.prod(image_shape[1:]))
    step = max(1, _PIECE_VOXELS // per_slab)
    tensor = labels.as_tensor() if isinstance(labels, MetaTensor) else labels
    flat = tensor.view(-1) if tensor.is_contiguous() else tensor.reshape(-1).clone()
    slabs = [(start, min(start + step, image_shape[0])) for start in range(0, image_shape[0], step)]
    misfit = sum(int(_slab(*slab, image_shape, to_grid, size, grid_labels, flat, check=True)) for slab in slabs)
    if misfit > 0.001 * flat.numel():
        log.warning("label refinement skipped: the preprocessing's inverse is not the affine it records "
                    "(%d voxels off); labels by nearest neighbour", misfit)
        return 0
    changed = 0
    for start, stop in slabs:
        todo, position = _slab(start, stop, image_shape, to_grid, size, grid_labels, flat, check=False)
        offset = start * per_slab
        for piece in todo.split(1 << 16):
            flat[offset + piece] = _interpolated_argmax(scores, position[:, piece]).to(flat.dtype)
        changed += len(todo)
    if flat.data_ptr() != tensor.data_ptr():
        tensor.copy_(flat.view(tensor.shape))
    return changed


def _slab(start, stop, image_shape, to_grid, size, grid_labels, flat, check: bool):
    """Image voxels of slab ``start:stop`` (first axis): with ``check``, how many have a nearest label
    that none of their model voxels has; else the (slab-relative) voxels to recompute and all positions."""
    index = _indices(start, stop, image_shape)
    position = to_grid[:-1, :-1] @ index + to_grid[:-1, -1:]
    del index
    inside = ((position > -0.5) & (position < size[:, None] - 0.5)).all(dim=0)
    position = torch.minimum(position.clamp_min(0), size[:, None] - 1)
    corners = _corner_labels(grid_labels, position)
    if check:
        offset = start * math.prod(image_shape[1:])
        nearest = flat[offset:offset + position.shape[1]].to(corners.dtype)
        return (inside & ~(corners == nearest).any(dim=0)).sum()
    return torch.nonzero(inside & (corners != corners[:1]).any(dim=0)).flatten(), position


def _indices(start: int, stop: int, shape) -> torch.Tensor:
    axes = [torch.arange(start, stop, dtype=torch.float64)] + [torch.arange(n, dtype=torch.float64) for n in shape[1:]]
    return torch.stack([g.reshape(-1) for g in torch.meshgrid(*axes, indexing="ij")])


def _corner_labels(grid_labels: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """Labels of the 2^d model voxels around each position ``(d, n)``: ``(2^d, n)``."""
    size = grid_labels.shape
    low = position.floor().long()
    low = torch.minimum(low, torch.tensor(size)[:, None] - 2).clamp_min(0)
    strides = torch.tensor(grid_labels.stride())[:, None]
    base = (low * strides).sum(dim=0)
    flat = grid_labels.reshape(-1)
    found = []
    for corner in range(2 ** len(size)):
        shift = torch.tensor([(corner >> axis) & 1 for axis in range(len(size))])[:, None]
        shift = torch.minimum(shift, torch.tensor(size)[:, None] - 1)
        found.append(flat[base + (shift * strides).sum(dim=0)])
    return torch.stack(found)


def _interpolated_argmax(scores: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """Argmax over channels of ``scores`` ``(C, *grid)`` interpolated linearly at ``position`` ``(d, n)``."""
    size = torch.tensor(scores.shape[1:], dtype=torch.float64)[:, None]
    normal = torch.where(size > 1, 2 * position / (size - 1).clamp_min(1) - 1, torch.zeros_like(position))
    grid = normal.flip(0).T.to(scores.dtype)  # grid_sample wants (x, y[, z]) of the last axis first
    grid = grid.reshape(1, *([1] * (scores.ndim - 2)), -1, scores.ndim - 1)
    values = torch.nn.functional.grid_sample(scores[None], grid, mode="bilinear", padding_mode="border",
                                             align_corners=True)
    return values.reshape(scores.shape[0], -1).argmax(dim=0)


def _activated(scores: torch.Tensor, activation: str | None) -> torch.Tensor:
    """``scores`` softmaxed / sigmoided in place (the bundle interpolates those), or as they are."""
    if activation == "softmax":
        peak = scores.max(dim=0, keepdim=True).values
        scores.sub_(peak).exp_()
        del peak
        scores.div_(scores.sum(dim=0, keepdim=True))
    elif activation == "sigmoid":
        scores.sigmoid_()
    return scores


def argmax_labels(scores: torch.Tensor) -> torch.Tensor:
    """The index of each voxel's highest channel, ``(1, *spatial)``, in the smallest integer type.

    ``scores`` ``(C, *spatial)`` is read a slab of the first spatial axis at a time, so no C-sized
    temporary and no int64 map of the whole grid is made. Ties go to the first channel, as ``argmax``.
    """
    channels, spatial = scores.shape[0], scores.shape[1:]
    dtype = torch.uint8 if channels <= 256 else torch.int16 if channels <= 32768 else torch.int32
    labels = torch.empty((1, *spatial), dtype=dtype, device=scores.device)
    per_row = max(1, math.prod(spatial[1:]))
    step = max(1, _PIECE_VOXELS // per_row)
    for start in range(0, spatial[0], step):
        piece = scores[:, start:start + step]
        labels[:, start:start + step] = torch.max(piece, dim=0, keepdim=True).indices.to(dtype)
    return labels


def _only_pred(step) -> bool:
    return tuple(step.keys) == (_KEY,)


def _monotone(step: Activationsd) -> bool:
    """Softmax, sigmoid or nothing on ``pred`` alone: none changes which channel is highest."""
    return _only_pred(step) and not any(step.other) and not (any(step.softmax) and any(step.sigmoid))


def _plain_invert(step: Invertd, preprocessing) -> bool:
    """``Invertd`` of ``pred`` by the bundle's preprocessing, from ``image``, with no function after it."""
    return (_only_pred(step) and step.transform is preprocessing and tuple(step.orig_keys) == ("image",)
            and not any(step.post_func) and all(d is None for d in step.device))


def _plain_argmax(step: AsDiscreted) -> bool:
    """``AsDiscreted(argmax=True)`` over channels of ``pred``, nothing else (no one-hot, threshold)."""
    kwargs = step.converter.kwargs
    return (_only_pred(step) and all(step.argmax) and not any(step.to_onehot) and all(t is None for t in step.threshold)
            and not any(step.rounding) and kwargs.get("dim", 0) == 0 and kwargs.get("keepdim", True))
