"""Global sums that do not depend on how the lattice is cut (reproducible summation).

Floating-point addition is not associative, so a plain MPI_Allreduce of per-rank partial sums
changes in the last bits with the decomposition, and so would an HMC accept/reject decision.
Here every value is split, elementwise and exactly, into ``nbins`` fixed-point integer digits of
``width`` bits below a global exponent E (2^E > max |x|):

    x = sum_k a_k 2^(E - (k+1) width) + r,   a_k integers, 0 <= r < 2^(E - nbins width),

the integer digits are summed exactly in int64 (locally and with MPI_SUM), which is associative,
and the total is rebuilt with Python integers and rounded once. The result is a function of the
set of values only, identical on all ranks and any process grid; it equals the exact sum up to
V 2^(E - nbins width), i.e. far below one ulp of float64. (The idea is that of Demmel and
Nguyen's reproducible summation, in its simplest fixed-point form.)
"""

import math

import numpy as np
from mpi4py import MPI

_PRECISION_BITS = 120


def digit_layout(global_count):
    """Bits per digit and number of digits so that ``global_count`` digits sum without overflow.

    width = min(52, 62 - ceil(log2(count + 1))); nbins = ceil(120 / width).
    """
    width = min(52, 62 - max(1, math.ceil(math.log2(global_count + 1))))
    if width < 8:
        raise ValueError(f"too many terms ({global_count}) for reproducible int64 summation")
    return width, -(-_PRECISION_BITS // width)


def _digits(x, exponent, width, nbins, axes, xp):
    """Integer digits of ``x`` summed over ``axes``: int64 array of shape (nbins, *rest)."""
    y = xp.ldexp(x.astype(np.float64), width - exponent)
    out = []
    for _ in range(nbins):
        a = xp.floor(y)
        out.append(a.astype(np.int64).sum(axis=axes))
        y = xp.ldexp(y - a, width)
    return xp.stack(out)


def reproducible_sum(x, comm, global_count, axes=None, xp=np, scale_comm=None):
    """Sum of ``x`` over ``axes`` and over all ranks of ``comm``, independent of the decomposition.

    Parameters
    ----------
    x : array
        Local values (float32 or float64).
    comm : mpi4py communicator
        The ranks whose values are added.
    global_count : int
        Upper bound on the number of terms added into one output entry, over all ranks
        (fixes the digit width; must be the same on all ranks).
    axes : tuple of int, optional
        Axes to sum over locally (default: all).
    xp : module
        ``numpy`` or ``cupy``.
    scale_comm : mpi4py communicator, optional
        The ranks over whose values the exponent E is taken (default ``comm``). Sums over
        sub-communicators (e.g. along lines) pass the whole lattice's, so that E, and with it
        the bits, do not depend on which ranks share a sub-communicator.

    Returns
    -------
    numpy.ndarray (float64) of the shape of ``x`` without ``axes``, the same on every rank
    (a 0-d array when all axes are summed).

    The caller must make the per-rank partial results line up entry by entry across ranks
    (e.g. by placing them into a global index range, zero elsewhere). A NaN anywhere makes
    the result NaN, an infinity (and no NaN) +inf, on every rank alike.
    """
    local_max = float(xp.max(xp.abs(x))) if x.size else 0.0
    # gathered, not MPI_MAX: a comparison-based maximum keeps or drops a NaN depending on
    # which rank holds it
    maxima = (scale_comm or comm).allgather(local_max)
    global_max = math.nan if any(math.isnan(m) for m in maxima) else max(maxima)
    if not math.isfinite(global_max):
        return np.full(_reduced_shape(x.shape, axes), global_max)
    if global_max == 0.0:
        return np.zeros(_reduced_shape(x.shape, axes))
    exponent = math.frexp(global_max)[1]
    width, nbins = digit_layout(global_count)
    local = _digits(x, exponent, width, nbins, axes, xp)
    local = local.get() if hasattr(local, "get") else np.asarray(local)
    total = np.empty_like(local)
    comm.Allreduce(np.ascontiguousarray(local), total, op=MPI.SUM)
    flat = total.reshape(nbins, -1)
    result = np.empty(flat.shape[1])
    for j in range(flat.shape[1]):
        exact = sum(int(flat[k, j]) << ((nbins - 1 - k) * width) for k in range(nbins))
        result[j] = math.ldexp(float(exact), exponent - nbins * width) if exact else 0.0
    return result.reshape(total.shape[1:])


def _reduced_shape(shape, axes):
    if axes is None:
        return ()
    axes = {a % len(shape) for a in np.atleast_1d(axes)}
    return tuple(n for i, n in enumerate(shape) if i not in axes)
