"""Checksums of lattice fields that do not depend on how the lattice is cut.

checksum = sum_j h(w_j XOR (j G)) mod 2^64 over the machine words w_j of the field (64-bit
words for float64 and complex128, 32-bit for float32 and complex64), with j = i(x) n + k the
global index of word k of the n words of site x, i(x) the global lexicographic site index (so
j is the word's position in the global C-ordered array; for one real number per site j = i(x))
and G the 64-bit golden-ratio constant. The mixing function h depends on the version:

- version 2 (files written now): the SplitMix64 finalizer
  z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB; z ^= z >> 31,
  a bijection of 64-bit words in which every input bit changes every output bit with
  probability ~1/2;
- version 1 (checkpoints and configuration files of format version 1): h(z) = y XOR (y >> 32),
  y = K z. Also a bijection, but a flip of the top bit of two words changes the sum by
  2^63 + 2^63 = 0 in that bit and the two +-2^31 can cancel: two sign flips can go unseen.

Each rank sums its words with wrapping uint64 arithmetic and the partial sums are added exactly
(Python integers) over the ranks, then reduced mod 2^64: the result is the same on any
decomposition. Since h is a bijection, a change of any single word (e.g. one flipped bit or
byte) always changes the checksum; with version 2, any other change (several words, values
moved between sites) goes unseen with probability about 2^-64.
The words are processed in cache-sized chunks, so the cost is a few passes at cache speed.
"""

import hashlib

import numpy as np

VERSION = 2  # of files written now
VERSIONS = (1, 2)  # that this lqcdflow can verify
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_K = np.uint64(0xBF58476D1CE4E5B9)
_K2 = np.uint64(0x94D049BB133111EB)
_CHUNK = 1 << 15  # words per chunk: 256 KiB per uint64 temporary, so the passes run in L2


def _words(field, xp):
    """The field's machine words as a flat array (uint64, or uint32 in single precision)."""
    word = {8: xp.uint64, 4: xp.uint32}[field.real.dtype.itemsize]
    return xp.ascontiguousarray(field).reshape(-1).view(word)


def mix(words, index):
    """h(w XOR (index G)) elementwise with h the SplitMix64 finalizer (version 2): uint64
    arrays ``words`` and ``index`` of one shape (or broadcastable); a new uint64 array."""
    z = index * _GOLDEN
    z ^= words
    for shift, factor in ((30, _K), (27, _K2)):
        z ^= z >> np.uint64(shift)
        z *= factor
    z ^= z >> np.uint64(31)
    return z


def _sum_of_mixed(words, index, xp, version):
    """sum_j h(w_j XOR (index_j G)) mod 2^64 (a Python int) of flat ``words`` and ``index``."""
    total = 0
    for start in range(0, words.size, _CHUNK):
        w = words[start:start + _CHUNK].astype(xp.uint64)
        i = index[start:start + _CHUNK]
        if version == 1:
            z = i * _GOLDEN
            z ^= w
            z *= _K
            z ^= z >> np.uint64(32)
        else:
            z = mix(w, i)
        total += int(z.sum(dtype=xp.uint64))
    return total % 2**64


def field_checksum(lattice, field, version=VERSION):
    """Decomposition-independent 64-bit checksum of a local field of any site shape and dtype
    (the same int on all ranks; collective)."""
    xp = lattice.xp
    words = _words(field, xp)
    index = lattice.dof_index((words.size // lattice.local_volume,)).reshape(-1)
    local = _sum_of_mixed(words, index, xp, version)
    return sum(lattice.comm.allgather(local)) % 2**64


def global_checksum(field, version=VERSION):
    """The checksum of a whole global field (NumPy array, lattice axes first, C order), equal
    to :func:`field_checksum` of its blocks on any decomposition; serial, no lattice needed."""
    words = _words(field, np)
    return _sum_of_mixed(words, np.arange(words.size, dtype=np.uint64), np, version)


def array_sha256(array):
    """SHA-256 (hex) of a NumPy array's bytes, dtype and shape (for small, rank-0 data)."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


ATTRIBUTES_HASH = "attributes_sha256"


def hdf5_sha256(file, skip, datasets=True):
    """SHA-256 (hex) of what an open HDF5 file holds: every attribute of every object but the
    root's ``skip`` (the one that stores this hash) and, with ``datasets``, every dataset's
    values, by name in sorted order (for small files, or the attributes of any file)."""
    digest = hashlib.sha256()

    def add_attributes(name, node):
        for key in sorted(node.attrs):
            if not (node is file and key == skip):
                value = np.asarray(node.attrs[key])
                digest.update(f"{name}@{key}={value.dtype.str}{value.shape}"
                              f"{value.tolist()!r};".encode())

    add_attributes("/", file)
    names = []
    file.visit(names.append)
    for name in sorted(names):
        node = file[name]
        add_attributes(name, node)
        if datasets and hasattr(node, "shape"):
            digest.update(f"{name}:{array_sha256(node[()])};".encode())
    return digest.hexdigest()


def seal_attributes(file):
    """Store the hash of all attributes of the open ``file`` (once all are written): the run
    metadata the analysis and restarts rely on, which the data checksums do not cover."""
    file.attrs[ATTRIBUTES_HASH] = hdf5_sha256(file, ATTRIBUTES_HASH, datasets=False)


def attributes_intact(file):
    """Whether the attributes of the open ``file`` match their hash (files written before
    attributes were sealed have none and pass)."""
    stored = file.attrs.get(ATTRIBUTES_HASH)
    return stored is None or stored == hdf5_sha256(file, ATTRIBUTES_HASH, datasets=False)
