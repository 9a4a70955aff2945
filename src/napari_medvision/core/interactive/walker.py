"""A random walker with an intensity prior (Grady 2005, "Multilabel random walker segmentation
using prior models"), two labels, on a 3D grid.

scikit-image's ``random_walker`` has no prior term, and without one a single small click seed loses
against a large background seed (the walker's known small-seed bias). With the prior, each voxel is
also pulled towards its own likelihood of being structure, which also makes the linear system better
conditioned (a conjugate-gradient solve of a few hundred thousand unknowns in well under a second).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import cg


def edge_weights(data: np.ndarray, beta: float) -> list[np.ndarray]:
    """``exp(-beta * step^2)`` between neighbours along each axis (``data`` in units of its spread)."""
    return [np.exp(-beta * np.diff(data, axis=axis) ** 2) + 1e-6 for axis in range(data.ndim)]


def walk_with_prior(data: np.ndarray, seeds: np.ndarray, prior: np.ndarray, beta: float = 0.5,
                    gamma: float = 0.1, tol: float = 1e-3) -> np.ndarray:
    """Probability of the structure label at each voxel.

    Minimises ``x' L x + gamma * sum(prior (1 - x)^2 + (1 - prior) x^2)`` with ``x`` fixed to 1 at
    structure seeds and 0 at background seeds (``L``: graph Laplacian of :func:`edge_weights`).

    Args:
        data: ``(z, y, x)`` intensities in units of the structure's spread.
        seeds: same shape, 1 structure, 2 background, 0 unknown.
        prior: same shape, likelihood in [0, 1] that a voxel is structure.
        beta: edge sharpness; gamma: weight of the prior against the edges.
    """
    shape, n = data.shape, data.size
    index = np.arange(n).reshape(shape)
    rows, cols, values = [], [], []
    for axis, weight in enumerate(edge_weights(data.astype(np.float64), beta)):
        a = np.take(index, range(shape[axis] - 1), axis=axis).ravel()
        b = np.take(index, range(1, shape[axis]), axis=axis).ravel()
        rows += [a, b]
        cols += [b, a]
        values += [weight.ravel(), weight.ravel()]
    adjacency = sparse.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                                  shape=(n, n))
    degree = np.asarray(adjacency.sum(axis=1)).ravel() + gamma
    laplacian = sparse.diags(degree) - adjacency
    fixed = seeds.ravel() > 0
    known = (seeds.ravel()[fixed] == 1).astype(np.float64)
    free = ~fixed
    system = laplacian[free][:, free].tocsr()
    right = gamma * prior.ravel()[free] - laplacian[free][:, fixed] @ known
    preconditioner = sparse.diags(1.0 / system.diagonal())
    solution, _ = cg(system, right, x0=prior.ravel()[free], rtol=tol, maxiter=400, M=preconditioner)
    probability = np.empty(n)
    probability[fixed] = known
    probability[free] = np.clip(solution, 0, 1)
    return probability.reshape(shape)
