"""Compiled (Numba) integer digits of a reproducible sum (lqcdflow.parallel.reduce), the same
integers as the array path's in one pass over the values instead of 4 nbins + 1.

Per value, in the operations of lqcdflow.parallel.reduce._digits: y = ldexp(x, width - E),
then for each digit a = floor(y), its sum += a, y = ldexp(y - a, width). ldexp and floor are
exact (or correctly rounded, identically, below the normal range) and integer sums do not
depend on their order, so the digits, and the sum rebuilt from them, are the same bits. The
ldexp are products with powers of two where those are doubles (a product is rounded once,
as ldexp's result is, and 0 <= y - a < 1 cannot overflow): a multiplication is not a call
into the C library.
"""

import math

import numpy as np

from lqcdflow.kernels.jit import kernel


@kernel()
def digits(x, exponent, width, nbins):
    """The digit sums (int64, nbins) of the flat values ``x`` below the exponent E."""
    out = np.zeros(nbins, np.int64)
    scale, first = math.ldexp(1.0, width), math.ldexp(1.0, width - exponent)
    by_product = 0.0 < first < math.inf
    for i in range(x.size):
        if by_product:
            y = np.float64(x[i]) * first
        else:
            y = math.ldexp(np.float64(x[i]), width - exponent)
        for k in range(nbins):
            a = math.floor(y)
            out[k] += np.int64(a)
            y = (y - a) * scale
    return out
