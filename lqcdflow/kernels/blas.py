"""y += a x on whole lattice fields, in cache-sized chunks on CPUs."""

import numpy as np

CHUNK_NUMBERS = 1 << 15  # numbers per chunk on CPUs (256 KiB of float64): a chunk stays in L2
_scratch = {}  # dtype -> one chunk


def axpy(y, a, x, xp):
    """y += a x in place, for C-contiguous arrays ``y`` and ``x`` of one shape.

    Forming a x for the whole field before adding it would write a field-sized temporary and
    read it back from L3 or memory; on CPUs a x is formed chunk by chunk in a scratch buffer
    of CHUNK_NUMBERS that is still in cache when it is added. The bits are the same whatever
    the chunks: y + a x is computed for each number alone, and y - c x equals y + (-c) x
    exactly. On GPUs it is one whole-field operation.
    """
    if not (y.flags.c_contiguous and x.flags.c_contiguous):
        raise ValueError("axpy updates y in place: y and x must be C-contiguous")
    if xp is not np or y.size <= CHUNK_NUMBERS:
        y += xp.multiply(x, a)
        return
    if y.dtype not in _scratch or _scratch[y.dtype].size != CHUNK_NUMBERS:
        _scratch[y.dtype] = np.empty(CHUNK_NUMBERS, dtype=y.dtype)
    scratch = _scratch[y.dtype]
    y_flat, x_flat = y.reshape(-1), x.reshape(-1)
    for start in range(0, y.size, CHUNK_NUMBERS):
        stop = min(start + CHUNK_NUMBERS, y.size)
        ax = np.multiply(x_flat[start:stop], a, out=scratch[:stop - start])
        y_flat[start:stop] += ax
