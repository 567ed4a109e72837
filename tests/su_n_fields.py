"""SU(N) gauge fields for tests: Haar-random links and gauge transformations (global
arrays, lattice axes first, then direction, row, column)."""

import numpy as np

from lqcdflow.groups.su_n import SU


def haar_links(shape, n, seed):
    """Haar-random SU(N) links of a lattice of ``shape`` (global array (..., D, N, N))."""
    normals = np.random.default_rng(seed).standard_normal(
        tuple(shape) + (len(shape), n - 1, n, 2))
    return SU(n).haar(normals, np)


def gauge_transform(links, g):
    """U_mu(x) -> g(x) U_mu(x) g(x + mu)^dagger (global arrays)."""
    out = np.empty_like(links)
    for mu in range(links.shape[-3]):
        g_up = np.roll(g, -1, axis=mu)
        out[..., mu, :, :] = g @ links[..., mu, :, :] @ g_up.conj().swapaxes(-1, -2)
    return out
