"""The Annotate dock's optional 3D box: rectangles drawn on two (or more) slices of a Shapes layer.

napari draws rectangles in a plane, so a 3D box is the extent of the rectangles drawn on the
slices where the structure starts and ends: in-plane, everything the rectangles cover; along
the slice axis, from the first rectangle's slice to the last one's. The layer shares the image's
affine, so its vertices are voxel indices ``(z, y, x)`` of the image.
"""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Shapes

from ..core.interactive.prompts import PromptError

BOX_LAYER = "prompt box"


def add_box_layer(viewer, image: Image) -> Shapes:
    """A fresh Shapes layer over ``image`` in rectangle mode (replacing an earlier box)."""
    if BOX_LAYER in viewer.layers:
        viewer.layers.remove(BOX_LAYER)
    shapes = viewer.add_shapes(name=BOX_LAYER, ndim=image.ndim, affine=image.affine, edge_color="yellow",
                               face_color="transparent", edge_width=1)
    shapes.mode = "add_rectangle"
    return shapes


def box_layer(viewer) -> Shapes | None:
    layer = viewer.layers[BOX_LAYER] if BOX_LAYER in viewer.layers else None
    return layer if isinstance(layer, Shapes) else None


def box_from_shapes(shapes: Shapes | None, shape_zyx) -> np.ndarray | None:
    """First and last voxel ``(z, y, x)`` (inclusive, ``(2, 3)`` int, inside ``shape_zyx``) of the
    rectangles' extent; None without rectangles or while they all lie on one slice.

    Raises:
        PromptError: rectangles wholly outside the image, or of zero area (a box of zero size).
    """
    if shapes is None or not len(shapes.data):
        return None
    vertices = np.concatenate([np.asarray(d) for d in shapes.data])
    if vertices.shape[1] < 3:   # a 2D image: its one rectangle is the box
        vertices = np.hstack([np.zeros((len(vertices), 3 - vertices.shape[1])), vertices])
    vertices = vertices[:, -3:]
    last = np.asarray(shape_zyx[-3:]) - 1
    rounded = np.floor(vertices + 0.5)
    if np.any(rounded.max(0) < 0) or np.any(rounded.min(0) > last):
        raise PromptError("the box lies outside the image: draw its rectangles on the image")
    lo = np.clip(rounded.min(0), 0, last).astype(int)
    hi = np.clip(rounded.max(0), 0, last).astype(int)
    if hi[0] == lo[0] and last[0] > 0:
        return None    # one slice so far: the second rectangle is still to come
    flat = [name for name, a, b, n in zip("zyx", lo, hi, last) if a == b and n > 0]
    if flat:
        raise PromptError(f"the box has zero size along {', '.join(flat[::-1])}: draw rectangles with an area")
    return np.stack([lo, hi])
