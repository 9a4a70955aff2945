"""The shipped interactive model as an engine: a small click-conditioned 3D U-Net on a cube around the clicks.

How one call works:

1. First cube (:mod:`.cube`): with a box, around the box; with several clicks, around them (later
   clicks mostly lie near the structure's border); with one click, a search over :data:`SCALES`:
   the largest cube whose answer fits it as the training examples did.
2. The cube resampled to 48^3 isotropic voxels, its intensities normalised within it, plus the
   positive and negative clicks as Gaussian guidance channels (the DeepEdit definition); the
   network's probability goes back onto the scan's grid.
3. Next passes: the cube re-centred and re-sized around the piece that holds the positive clicks
   (the framing the network was trained on: 1.5 times its extent plus 10 mm), at least 1.6 times
   bigger when that piece touches the cube's side (the structure is bigger than the cube); until the
   framing settles, at most :data:`PASSES` passes. Growing from a small cube, not shrinking from
   a big one: in a cube much bigger than the structure the network tends to spill over.
4. Over 0.5, clicks enforced, holes filled, only the pieces holding a positive click kept.

The network comes from a MONAI bundle (``sample_models/interactive_unet`` by default): its
``network_def`` and ``models/model.pt`` (a state dict, ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .base import InteractiveEngine, fill_holes
from .cube import MAX_SIDE_MM, Cube, cube_around, network_input, paste, sample
from .prompts import Prompts

#: The shipped bundle.
SAMPLE_NAME = "interactive_unet"
#: Most network passes per call (each ~0.1-0.3 s on a 2-core CPU).
PASSES = 6
#: Cube sides tried around a single click, mm, and the ratios (cube around the answer / cube) that
#: count as the framing the network was trained on (1.2-2.1 times the extent plus 4-16 mm).
SCALES = (24.0, 48.0, 96.0, 192.0)
CONSISTENT = (0.75, 1.3)
#: Least growth of the cube when the structure touches its side.
GROW = 1.6
#: A pass reruns when the new cube's side changes by more than this fraction or its centre moves
#: by more than this fraction of the side.
RERUN_CHANGE = 0.15


def sample_bundle_path() -> Path:
    from ..models.bundle import SAMPLE_MODELS_DIR

    return SAMPLE_MODELS_DIR / SAMPLE_NAME


class ClickUNetEngine(InteractiveEngine):
    """A click-conditioned 3D U-Net (MONAI ``UNet``) trained on random structures and real scans."""

    name = SAMPLE_NAME
    description = ("shipped model: click-conditioned 3D U-Net on a 48^3 cube around the clicks "
                   "(3D CT or MR)")

    def __init__(self, bundle_path: str | Path | None = None, threads: int | None = None, device: str = "auto"):
        self.bundle_path = Path(bundle_path) if bundle_path else sample_bundle_path()
        self.threads = threads
        self.device = device       # auto / cpu / cuda / mps (core.models.device), resolved when built
        self._network = None
        self._lock = threading.Lock()

    def fits(self, image: np.ndarray, spacing_xyz) -> bool:
        """3D images (at least 2 voxels along each axis) when the bundle's weights are there."""
        return (image.ndim == 3 and min(image.shape) >= 2
                and (self.bundle_path / "models" / "model.pt").is_file())

    def network(self):
        """The network in eval mode on the engine's device, built once per engine.

        Raises:
            ModelError: a forced device this machine lacks (as ``choose_device``), or bad weights.
        """
        from ..models.device import choose_device

        with self._lock:
            if self._network is None:
                self._network = load_network(self.bundle_path).to(choose_device(self.device))
        return self._network

    def segment(self, image: np.ndarray, spacing_xyz, prompts: Prompts) -> np.ndarray:
        spacing_zyx = np.asarray(spacing_xyz, float)[::-1]
        positive = prompts.positive if len(prompts.positive) else _box_centre(prompts)
        prompts = Prompts(positive, prompts.negative, prompts.box)
        cube = self.first_cube(spacing_zyx, prompts)
        if prompts.box is None and cube is None:
            cube = self.search_scale(image, spacing_zyx, prompts)
        for _ in range(PASSES):
            box, values = self.predict(image, spacing_zyx, cube, positive, prompts.negative)
            if prompts.box is not None:
                break
            piece = _piece(values > 0.5, positive - np.array([s.start for s in box]))
            better = self.refit(piece, box, cube, image.shape, positive, spacing_zyx)
            if better is None or not _differs(cube, better, spacing_zyx):
                break
            cube = better
        return _finish(box, values > 0.5, image.shape, positive, prompts)

    def search_scale(self, image, spacing_zyx, prompts: Prompts) -> Cube:
        """The cube for clicks that give no size: of :data:`SCALES`, the largest one whose answer
        fits it as the network was trained (the cube around the answer about as big as the cube);
        the smallest when none does."""
        centre = tuple(float(c) for c in prompts.positive.mean(0))
        best = Cube(centre, SCALES[0])
        for side in SCALES:
            cube = Cube(centre, side)
            box, values = self.predict(image, spacing_zyx, cube, prompts.positive, prompts.negative)
            piece = _piece(values > 0.5, prompts.positive - np.array([s.start for s in box]))
            fitted = self.refit(piece, box, cube, image.shape, prompts.positive, spacing_zyx)
            if fitted is not None and CONSISTENT[0] <= fitted.side_mm / side <= CONSISTENT[1]:
                best = fitted
        return best

    def first_cube(self, spacing_zyx, prompts: Prompts) -> Cube | None:
        """The cube of the first pass: around the box, or around several clicks (None: one click,
        or clicks too close together to give the structure's size; see :meth:`search_scale`)."""
        if prompts.box is not None:
            return cube_around(prompts.box[0], prompts.box[1], spacing_zyx, scale=1.15, pad_mm=6.0)
        points = np.vstack([prompts.positive, prompts.negative])
        if len(points) > 1:
            around = cube_around(points.min(0), points.max(0), spacing_zyx)
            if around.side_mm > 1.5 * SCALES[0]:
                return around
        return None

    def refit(self, piece: np.ndarray, box, cube: Cube, shape, positive, spacing_zyx) -> Cube | None:
        """The cube around ``piece`` (on the slices ``box``) and the positive clicks, at least
        :data:`GROW` times ``cube``'s side when the piece touches a side of the cube's footprint that
        is not the image's edge."""
        where = np.argwhere(piece)
        if not len(where):
            return None
        where = where + np.array([s.start for s in box])
        points = np.vstack([where, positive])
        better = cube_around(points.min(0), points.max(0), spacing_zyx)
        footprint = cube.footprint(shape, spacing_zyx)
        start, stop = np.array([s.start for s in footprint]), np.array([s.stop for s in footprint])
        low = (where.min(0) <= start) & (start > 0)
        high = (where.max(0) >= stop - 1) & (stop < np.asarray(shape))
        if np.any(low | high):
            better = Cube(better.centre, float(min(max(better.side_mm, GROW * cube.side_mm), MAX_SIDE_MM)))
        return better

    def predict(self, image, spacing_zyx, cube: Cube, positive, negative):
        """One pass: ``(slices, probability on them)``: the part of the cube's footprint where the
        probability can exceed 0.5 (:func:`.cube.paste`), the whole footprint when it does nowhere."""
        import torch
        from scipy.special import expit

        block = sample(image, cube, spacing_zyx)
        inputs = network_input(block, cube.to_cube(positive, spacing_zyx), cube.to_cube(negative, spacing_zyx))
        network = self.network()
        device = next(network.parameters()).device
        with torch.inference_mode(), _threads(self.threads):
            logits = network(torch.from_numpy(inputs)[None].to(device))[0, 0].float().cpu().numpy()
        return paste(expit(logits), cube, image.shape, spacing_zyx, above=0.5)   # expit: no overflow for large logits


def load_network(bundle_path: Path):
    """The bundle's ``network_def`` with its ``models/model.pt`` weights, eval mode, CPU.

    Raises:
        ModelError: the bundle or its weights are missing or do not match the network.
    """
    import json

    import torch
    from monai.bundle import ConfigParser

    config_path, weights = bundle_path / "configs" / "inference.json", bundle_path / "models" / "model.pt"
    if not config_path.is_file() or not weights.is_file():
        raise ModelError(f"the interactive model at {bundle_path} has no configs/inference.json or "
                         "models/model.pt: train it with `medvision train interactive_unet --output DIR`")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    network = ConfigParser({"n": config["network_def"]}).get_parsed_content("n")
    try:
        network.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except RuntimeError as exc:
        raise ModelError(f"the weights in {weights} do not fit the bundle's network: {exc}") from None
    return network.eval()


class _threads:
    """Torch intra-op threads for one call (unchanged when ``count`` is None)."""

    def __init__(self, count):
        self.count = count

    def __enter__(self):
        import torch

        self.before = torch.get_num_threads()
        if self.count:
            torch.set_num_threads(self.count)

    def __exit__(self, *_):
        import torch

        torch.set_num_threads(self.before)


def _differs(old: Cube, new: Cube, spacing_zyx) -> bool:
    moved = np.abs(np.asarray(new.centre) - np.asarray(old.centre)) * np.asarray(spacing_zyx)
    return (abs(new.side_mm - old.side_mm) > RERUN_CHANGE * old.side_mm
            or float(moved.max()) > RERUN_CHANGE * old.side_mm)


def _piece(mask: np.ndarray, positive) -> np.ndarray:
    """The connected pieces of ``mask`` that hold a positive click (indices into ``mask``)."""
    from scipy import ndimage

    labels, _ = ndimage.label(mask)
    inside = [p for p in np.asarray(positive, int).reshape(-1, 3) if np.all((p >= 0) & (p < mask.shape))]
    keep = {int(labels[tuple(p)]) for p in inside} - {0}
    return np.isin(labels, list(keep)) if keep else np.zeros(mask.shape, bool)


def _finish(box, footprint: np.ndarray, shape, positive, prompts: Prompts) -> np.ndarray:
    """The mask on the scan's grid (uint8): ``footprint`` (the network's answer on the slices ``box``)
    with the clicks enforced, holes filled (not those that hold a negative click), only the pieces
    that hold a positive click.

    All of it runs on the region around the footprint and the positive clicks, padded by one voxel,
    not on the whole scan: the same result (outside that region the mask is empty, so a hole can not
    reach past it), and on a 512x512x200 CT the whole-scan hole filling alone took 1.9 s of a 3.2 s click.
    """
    from scipy import ndimage

    positive = np.asarray(positive, int).reshape(-1, 3)
    low = np.minimum([s.start for s in box], positive.min(0)) - 1
    high = np.maximum([s.stop for s in box], positive.max(0) + 1) + 1
    region = tuple(slice(int(a), int(b)) for a, b in zip(np.maximum(low, 0), np.minimum(high, shape)))
    start = np.array([s.start for s in region])
    mask = np.zeros([s.stop - s.start for s in region], bool)
    mask[tuple(slice(s.start - r.start, s.stop - r.start) for s, r in zip(box, region))] = footprint
    negative = np.asarray(prompts.negative, int).reshape(-1, 3) - start
    negative = negative[np.all((negative >= 0) & (negative < mask.shape), axis=1)]
    mask[tuple(negative.T)] = False
    mask[tuple((positive - start).T)] = True
    if prompts.box is not None:
        inside = np.zeros(mask.shape, bool)
        inside[tuple(slice(max(a - o, 0), max(b + 1 - o, 0)) for a, b, o in zip(prompts.box[0], prompts.box[1], start))] = True
        mask &= inside
    mask = fill_holes(mask, negative)
    labels, _ = ndimage.label(mask)
    keep = {int(labels[tuple(p)]) for p in positive - start} - {0}
    out = np.zeros(shape, np.uint8)
    out[region] = np.isin(labels, list(keep))
    return out


def _box_centre(prompts: Prompts) -> np.ndarray:
    return ((prompts.box[0] + prompts.box[1]) // 2).reshape(1, 3)
