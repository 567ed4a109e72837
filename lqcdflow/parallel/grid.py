"""Choice of the Cartesian process grid for a lattice."""

import math


class GridError(ValueError):
    """A lattice cannot be split over the ranks as requested."""


def _factorizations(n, ndim):
    """All ordered tuples of ``ndim`` positive integers whose product is ``n``."""
    if ndim == 1:
        return [(n,)]
    return [(d,) + rest for d in range(1, n + 1) if n % d == 0
            for rest in _factorizations(n // d, ndim - 1)]


def halo_sites(shape, grid):
    """Sites a rank sends per halo exchange: sum over split directions of 2 V_local / l_mu."""
    local = [L // g for L, g in zip(shape, grid)]
    volume = math.prod(local)
    return sum(2 * volume // l for l, g in zip(local, grid) if g > 1)


def check_grid(shape, grid, nranks):
    """Raise GridError unless ``grid`` splits ``shape`` evenly over ``nranks`` ranks."""
    if len(grid) != len(shape):
        raise GridError(f"process grid {list(grid)} has {len(grid)} directions, "
                        f"the lattice {list(shape)} has {len(shape)}")
    if any(g < 1 for g in grid):
        raise GridError(f"process grid {list(grid)} must have positive entries")
    if math.prod(grid) != nranks:
        raise GridError(f"process grid {list(grid)} has {math.prod(grid)} ranks, "
                        f"the job has {nranks}")
    bad = [mu for mu, (L, g) in enumerate(zip(shape, grid)) if L % g]
    if bad:
        mu = bad[0]
        raise GridError(f"lattice extent {shape[mu]} in direction {mu} is not divisible "
                        f"by {grid[mu]} ranks (process grid {list(grid)})")


def choose_grid(shape, nranks):
    """The process grid with the smallest halo surface that splits ``shape`` over ``nranks``.

    Among all factorizations g_0 ... g_{D-1} = nranks with g_mu dividing L_mu, minimise the sites
    exchanged per rank (see :func:`halo_sites`); ties go to the grid that splits the slowest
    (first) directions most, whose faces are the largest contiguous blocks in memory.

    >>> choose_grid((16, 16), 4)
    (4, 1)
    >>> choose_grid((16, 16, 16), 8)  # ties with (2, 2, 2), sends 4 messages instead of 6
    (4, 2, 1)
    >>> choose_grid((8, 4, 4, 4), 2)
    (2, 1, 1, 1)
    """
    candidates = valid_grids(shape, nranks)
    if not candidates:
        raise GridError(f"lattice {list(shape)} cannot be split evenly over {nranks} ranks: "
                        "choose extents with a common factor structure or another rank count")
    return min(candidates, key=lambda g: (halo_sites(shape, g), tuple(-x for x in g)))


def valid_grids(shape, nranks):
    """Every process grid that splits ``shape`` evenly over ``nranks`` ranks."""
    return [g for g in _factorizations(nranks, len(shape))
            if all(L % n == 0 for L, n in zip(shape, g))]
