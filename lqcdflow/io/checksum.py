"""Checksums of lattice fields that do not depend on how the lattice is cut.

checksum = sum_j h(w_j XOR (j G)) mod 2^64 with h(z) = y XOR (y >> 32), y = K z, over the
machine words w_j of the field (64-bit words for float64 and complex128, 32-bit for float32 and
complex64), j = i(x) n + k the global index of word k of the n words of site x, i(x) the
global lexicographic site index (for one real number per site, j = i(x)), G the 64-bit
golden-ratio constant and K an odd constant.
Each rank sums its sites with wrapping uint64 arithmetic and the partial sums are added with
MPI_SUM, which wraps the same way; addition mod 2^64 is associative and commutative, so the
result is the same on any decomposition. Multiplication by an odd K and the xor-shift are
bijections of 64-bit words, so a change of any single value (e.g. one flipped bit) always
changes the checksum; moving values between sites changes it with probability 1 - 2^-64.
The sites are processed in cache-sized chunks, so the cost is a few passes at cache speed.
"""

import hashlib

import numpy as np
from mpi4py import MPI

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_K = np.uint64(0xBF58476D1CE4E5B9)
_CHUNK = 1 << 15  # sites per chunk: 256 KiB per uint64 buffer, so the passes run in L2


def field_checksum(lattice, field):
    """Decomposition-independent 64-bit checksum of a local field of any site shape and dtype
    (the same int on all ranks)."""
    xp = lattice.xp
    word = {8: xp.uint64, 4: xp.uint32}[field.real.dtype.itemsize]
    bits = xp.ascontiguousarray(field).reshape(-1).view(word)
    words_per_site = bits.size // lattice.local_volume
    sites = lattice.dof_index((words_per_site,)).reshape(-1)
    z = xp.empty(min(_CHUNK, bits.size), dtype=xp.uint64)
    shifted = xp.empty_like(z)
    local = 0
    for start in range(0, bits.size, _CHUNK):
        n = min(_CHUNK, bits.size - start)
        zc, sc = z[:n], shifted[:n]
        # reused chunk buffers (out=): no allocation, every pass stays in cache
        xp.multiply(sites[start:start + n], _GOLDEN, out=zc)
        xp.bitwise_xor(zc, bits[start:start + n], out=zc, casting="unsafe")
        xp.multiply(zc, _K, out=zc)
        xp.right_shift(zc, np.uint64(32), out=sc)
        xp.bitwise_xor(zc, sc, out=zc)
        local += int(zc.sum(dtype=xp.uint64))
    total = np.zeros(1, np.uint64)
    lattice.comm.Allreduce(np.array([local % 2**64], np.uint64), total, op=MPI.SUM)
    return int(total[0])


def array_sha256(array):
    """SHA-256 (hex) of a NumPy array's bytes, dtype and shape (for small, rank-0 data)."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()
