"""Prompts for interactive segmentation: clicks and an optional box, checked against an image.

Every index here is in array order ``(z, y, x)`` (as ``SimpleITK.GetArrayFromImage`` gives the
voxels); :func:`prompts_from_itk` turns the ``(x, y, z)`` voxel indices that SimpleITK and the
command line use into that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import MedvisionError


#: The message for prompts without a positive click or a box.
ONLY_NEGATIVE = ("only negative clicks: give at least one positive click (+) inside the structure "
                 "(or a box around it)")


class PromptError(MedvisionError):
    """Clicks or a box that cannot prompt a segmentation (outside the image, no positive click...)."""


@dataclass(frozen=True)
class Prompts:
    """Clicks and an optional box on one image grid.

    Attributes:
        positive: ``(N, 3)`` int voxel indices ``(z, y, x)`` inside the structure.
        negative: ``(M, 3)`` int voxel indices ``(z, y, x)`` not part of it.
        box: ``(2, 3)`` int, first and last voxel ``(z, y, x)`` of a box around it (inclusive), or None.
    """

    positive: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), int))
    negative: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), int))
    box: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "positive", np.asarray(self.positive, int).reshape(-1, 3))
        object.__setattr__(self, "negative", np.asarray(self.negative, int).reshape(-1, 3))
        if self.box is not None:
            box = np.asarray(self.box, int).reshape(2, 3)
            object.__setattr__(self, "box", np.stack([box.min(0), box.max(0)]))

    @property
    def clicks(self) -> int:
        return len(self.positive) + len(self.negative)

    def add(self, index_zyx, positive: bool) -> "Prompts":
        """A copy with one more click."""
        point = np.asarray(index_zyx, int).reshape(1, 3)
        if positive:
            return Prompts(np.vstack([self.positive, point]), self.negative, self.box)
        return Prompts(self.positive, np.vstack([self.negative, point]), self.box)

    def check(self, shape: tuple[int, ...]) -> "Prompts":
        """Refuse prompts that do not fit an array of ``shape`` ``(z, y, x)``; returns self.

        Raises:
            PromptError: a click or box corner outside the image, a voxel with both a + and a -
                click, a box of zero size, a positive click outside the box, or no positive click and no box.
        """
        shape = np.asarray(shape)
        for kind, points in (("positive", self.positive), ("negative", self.negative)):
            for point in points:
                if np.any(point < 0) or np.any(point >= shape):
                    raise PromptError(f"the {kind} click at {_itk(point)} (x,y,z) lies outside the image, "
                                      f"whose voxel indices run 0..{_itk(shape - 1)}: click inside it")
        both = {tuple(p) for p in self.positive.tolist()} & {tuple(p) for p in self.negative.tolist()}
        if both:
            raise PromptError(f"the voxel {_itk(min(both))} (x,y,z) has both a + and a - click: "
                              "remove one of them")
        if self.box is not None:
            if np.any(self.box[0] < 0) or np.any(self.box[1] >= shape):
                raise PromptError(f"the box {_itk(self.box[0])}-{_itk(self.box[1])} (x,y,z) reaches outside "
                                  f"the image (0..{_itk(shape - 1)}): draw it inside the image")
            flat = [name for name, n, d in zip("zyx", shape, self.box[1] - self.box[0]) if d == 0 and n > 1]
            if flat:
                raise PromptError(f"the box has zero size along {', '.join(flat[::-1])}: "
                                  "give two opposite corners that differ along each axis")
            for point in self.positive:
                if np.any(point < self.box[0]) or np.any(point > self.box[1]):
                    raise PromptError(f"the positive click at {_itk(point)} (x,y,z) lies outside the box "
                                      f"{_itk(self.box[0])}-{_itk(self.box[1])}: the structure is inside the box, "
                                      "so click inside it (or redraw the box)")
        if not len(self.positive) and self.box is None:
            raise PromptError(ONLY_NEGATIVE)
        return self


def prompts_from_itk(points: list[tuple[int, int, int, bool]], box_xyz=None, dimension: int = 3) -> Prompts:
    """Prompts from SimpleITK-order ``(x, y, z)`` indices.

    Args:
        points: ``(x, y, z, positive)`` per click.
        box_xyz: ``(x0, y0, z0, x1, y1, z1)`` or None.
        dimension: 2 for a 2D image, whose clicks must have z = 0.
    """
    if dimension == 2:
        for x, y, z, _ in points:
            if z != 0:
                raise PromptError(f"the image is 2D but the click ({x},{y},{z}) has z = {z}: give z = 0")
    positive = [(z, y, x) for x, y, z, sign in points if sign]
    negative = [(z, y, x) for x, y, z, sign in points if not sign]
    box = None
    if box_xyz is not None:
        x0, y0, z0, x1, y1, z1 = box_xyz
        box = [(z0, y0, x0), (z1, y1, x1)]
    return Prompts(positive, negative, box)


def _itk(index_zyx) -> str:
    return "(" + ",".join(str(int(v)) for v in np.asarray(index_zyx)[::-1]) + ")"
