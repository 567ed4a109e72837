"""Global sums that do not depend on how the lattice is cut (reproducible summation).

Floating-point addition is not associative, so a plain MPI_Allreduce of per-rank partial sums
changes in the last bits with the decomposition, and so would an HMC accept/reject decision.
Here every value is split, elementwise and exactly, into ``nbins`` fixed-point integer digits of
``width`` bits below an exponent E (2^E > max |x| over the terms of the same sum, on all ranks):

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


# digits(flat x, E, width, nbins) of whole NumPy arrays, the same integers as _digits's array
# operations in one compiled pass (lqcdflow.kernels.reduce_numba), set by use_compiled_digits
_compiled_digits = None


def use_compiled_digits(digits):
    """Take ``digits`` (lqcdflow.kernels.reduce_numba.digits) for the sums of whole NumPy
    arrays from now on: lqcdflow.kernels.select does so where compiled kernels run (numba is
    loaded then; importing it for the sums alone would cost a short run more than they save).
    The sums keep their bits."""
    global _compiled_digits
    _compiled_digits = digits


def _digits(x, exponent, width, nbins, axes, xp):
    """Integer digits of ``x`` summed over ``axes``: int64 array of shape (nbins, *rest).
    ``exponent`` holds E per output entry, broadcastable against ``x``."""
    if _compiled_digits is not None and xp is np and len(axes) == x.ndim:
        return _compiled_digits(x.reshape(-1), int(exponent.reshape(-1)[0]), width, nbins)
    y = xp.ldexp(x.astype(np.float64), width - exponent)
    out = []
    for _ in range(nbins):
        a = xp.floor(y)
        out.append(a.astype(np.int64).sum(axis=axes))
        y = xp.ldexp(y - a, width)
    return xp.stack(out)


def reproducible_sum(x, comm, global_count, axes=None, xp=np):
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

    Returns
    -------
    numpy.ndarray (float64) of the shape of ``x`` without ``axes``, the same on every rank
    (a 0-d array when all axes are summed).

    Every output entry j has its own exponent E_j, from the largest |x| among the terms of
    entry j on all ranks, so its bits depend on its own terms only: not on the other entries
    (other samples of a batch, other lines), nor on which ranks hold which terms. The caller
    must make the per-rank partial results line up entry by entry across ranks (e.g. by
    placing them into a global index range, zero elsewhere). A NaN among an entry's terms
    makes it NaN, an infinity (and no NaN) +inf, on every rank alike.
    """
    axes = tuple(range(x.ndim)) if axes is None else tuple(int(a) % x.ndim
                                                           for a in np.atleast_1d(axes))
    kept = tuple(n for i, n in enumerate(x.shape) if i not in axes)
    local_max = xp.max(xp.abs(x), axis=axes) if x.size else xp.zeros(kept)
    local_max = local_max.get() if hasattr(local_max, "get") else np.asarray(local_max)
    # gathered, not MPI_MAX: a comparison-based maximum keeps or drops a NaN depending on
    # which rank holds it; np.max propagates it
    gathered = np.empty((comm.Get_size(),) + local_max.shape)
    comm.Allgather(np.ascontiguousarray(local_max, dtype=np.float64), gathered)
    global_max = np.max(gathered, axis=0)
    finite = np.isfinite(global_max)
    exponent = np.where(finite, np.frexp(np.where(finite, global_max, 0.0))[1], 0)
    width, nbins = digit_layout(global_count)
    broadcast = xp.asarray(np.expand_dims(exponent, axes))
    values = x if bool(finite.all()) else xp.where(xp.asarray(np.expand_dims(finite, axes)),
                                                   x, 0)
    local = _digits(values, broadcast, width, nbins, axes, xp)
    local = local.get() if hasattr(local, "get") else np.asarray(local)
    total = np.empty_like(local)
    comm.Allreduce(np.ascontiguousarray(local), total, op=MPI.SUM)
    # the exact totals sum_k a_k 2^((nbins - 1 - k) width) need more than 64 bits: Python
    # integers, entry by entry in an object array; float() rounds each once, ldexp is exact
    # (or rounds once, into the subnormals)
    digits = total.reshape(nbins, -1).astype(object)
    exact = digits[0]
    for k in range(1, nbins):
        exact = (exact << width) + digits[k]
    scale = exponent.reshape(-1) - nbins * width
    result = np.array(global_max, dtype=np.float64).reshape(-1)
    finite = finite.reshape(-1)
    result[finite] = np.ldexp(exact.astype(np.float64), scale)[finite]
    return result.reshape(kept)
