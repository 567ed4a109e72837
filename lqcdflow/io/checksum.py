"""Checksums of lattice fields that do not depend on how the lattice is cut.

checksum = sum_x mix(bits(phi_x) XOR mix(i(x) + c)) mod 2^64, with i(x) the global
lexicographic index and mix the SplitMix64 finaliser (Steele, Lea, Flood 2014). Each rank sums
its sites with wrapping uint64 arithmetic and the partial sums are added with MPI_SUM, which
wraps the same way; addition mod 2^64 is associative and commutative, so the result is the
same on any decomposition, and any changed bit of any value or a permutation of sites changes it
(with probability 1 - 2^-64).
"""

import hashlib

import numpy as np
from mpi4py import MPI

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(z):
    """SplitMix64 finaliser, elementwise on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def field_checksum(lattice, field):
    """Decomposition-independent 64-bit checksum of a local field (same int on all ranks)."""
    xp = lattice.xp
    field = xp.ascontiguousarray(field)
    width = {8: xp.uint64, 4: xp.uint32}[field.dtype.itemsize]
    bits = field.view(width).astype(xp.uint64)
    with np.errstate(over="ignore"):
        local = xp.sum(_mix(bits ^ _mix(lattice.site_index + _GOLDEN)), dtype=xp.uint64)
    total = np.zeros(1, np.uint64)
    lattice.comm.Allreduce(np.array([int(local)], np.uint64), total, op=MPI.SUM)
    return int(total[0])


def array_sha256(array):
    """SHA-256 (hex) of a NumPy array's bytes, dtype and shape (for small, rank-0 data)."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()
