"""openQCD gauge configurations (openQCD modules/archive/archive.c, export_cnfg/import_cnfg).

Layout, little-endian: a header of four int32, the extents N0 N1 N2 N3 (time first), and one
double, the average plaquette sum_P Re tr U_P / (6 V) (three times lqcdflow's normalised one);
then, for every odd site x (x0 + x1 + x2 + x3 odd) in lexicographic order with x3 fastest, the
eight links U_0(x), U_0(x - 0), U_1(x), U_1(x - 1), ..., U_3(x - 3), each a 3 x 3 complex matrix
row by row as 18 doubles: 24 + 576 V bytes. openQCD's axes are lqcdflow's (x0 = t, x1, x2, x3);
all extents must be even.

Every link sits at an odd site's end: U_mu(x) is the forward link of x when x is odd, and the
backward link of the odd site x + mu when x is even. Reading and writing are collective and
parallel (lqcdflow.io.blocks): each rank handles whole x3 lines of its (x0, x1, x2) box, so that
its odd sites are contiguous in the file; writing needs a process grid that does not split x3,
reading takes any and keeps only its part of each line.
"""

import os
import struct

import numpy as np

from lqcdflow.io import blocks

HEADER = struct.Struct("<iiiid")
SITE = np.dtype(("<c16", (8, 3, 3)))  # the eight links of an odd site


class OpenQCDError(ValueError):
    """A file that is not a readable openQCD configuration of the expected lattice."""


def _odd_x3(lattice, x3_offset=0):
    """Index (l0, l1, l2, N3/2) of the odd sites along each x3 line of this rank's box:
    x3 = first + 2k, first = (1 + x0 + x1 + x2) mod 2 (global coordinates)."""
    parity = np.zeros((), dtype=np.int64)
    for mu in range(3):
        coords = lattice.offset[mu] + np.arange(lattice.local_shape[mu])
        parity = parity[..., None] + coords
    first = (1 + parity) % 2
    return first[..., None] + 2 * np.arange(lattice.shape[3] // 2) - x3_offset


def _check_even(shape, what):
    if any(n % 2 for n in shape):
        raise OpenQCDError(f"{what}: openQCD configurations need even extents, the lattice is "
                           f"{'x'.join(map(str, shape))}")


def write(path, lattice, links, mean_re_trace):
    """Write the SU(3) ``links`` (this rank's block, site shape (4, 3, 3)) as an openQCD file
    whose header holds ``mean_re_trace`` = sum_P Re tr U_P / (6 V) (collective; ``path``
    appears only when complete). The process grid must not split direction 3."""
    _check_even(lattice.shape, path)
    if lattice.grid[3] != 1:
        raise OpenQCDError(f"{path}: writing openQCD files needs a process grid with one rank "
                           f"along direction 3, got {list(lattice.grid)}")
    xp = lattice.xp
    record = []
    for mu in range(4):
        forward = xp.ascontiguousarray(links[..., mu, :, :])
        record += [forward, lattice.shift(forward, mu, -1)]
    record = np.stack([lattice.backend.asnumpy(r) for r in record], axis=-3)
    odd = _odd_x3(lattice)[..., None, None, None]
    data = np.ascontiguousarray(np.take_along_axis(record, odd, axis=3), dtype="<c16")
    temporary = f"{path}.tmp"
    if lattice.rank == 0:
        with open(temporary, "wb") as f:
            f.write(HEADER.pack(*lattice.shape, mean_re_trace))
            f.truncate(HEADER.size + lattice.volume // 2 * SITE.itemsize)
    lattice.comm.Barrier()
    shape = list(lattice.shape[:3]) + [lattice.shape[3] // 2]
    start = list(lattice.offset[:3]) + [0]
    blocks.write_block(lattice.comm, temporary, HEADER.size, shape, start, data)
    lattice.comm.Barrier()
    if lattice.rank == 0:
        os.replace(temporary, path)
    lattice.comm.Barrier()


def header(path):
    """((N0, N1, N2, N3), the stored mean Re tr U_P) of an openQCD file; OpenQCDError if the
    file is too short or its size does not match its header."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(HEADER.size)
    if len(head) < HEADER.size:
        raise OpenQCDError(f"{path}: truncated ({size} bytes, an openQCD header has "
                           f"{HEADER.size})")
    *shape, plaquette = HEADER.unpack(head)
    if any(n < 1 or n > 1 << 20 for n in shape):
        raise OpenQCDError(f"{path}: not an openQCD configuration (extents {shape})")
    expected = HEADER.size + int(np.prod(shape, dtype=np.int64)) // 2 * SITE.itemsize
    if size != expected:
        raise OpenQCDError(f"{path}: {size} bytes, an openQCD configuration of "
                           f"{'x'.join(map(str, shape))} has {expected}"
                           + (" (truncated)" if size < expected else ""))
    return tuple(shape), plaquette


def read(path, lattice, dtype):
    """(this rank's links, site shape (4, 3, 3) of ``dtype``; the stored mean Re tr U_P) of
    the openQCD file ``path``, on any process grid (collective)."""
    def checked_header():
        found = header(path)
        _check_even(found[0], path)
        if found[0] != lattice.shape:
            raise OpenQCDError(f"{path}: an openQCD configuration of a "
                               f"{'x'.join(map(str, found[0]))} lattice, the run's is "
                               f"{'x'.join(map(str, lattice.shape))}")
        return found

    found = blocks.on_root(lattice.comm, checked_header, OpenQCDError, path)
    n3 = lattice.shape[3]
    box = list(lattice.local_shape[:3]) + [n3 // 2]
    data = blocks.read_block(lattice.comm, path, HEADER.size,
                             list(lattice.shape[:3]) + [n3 // 2],
                             list(lattice.offset[:3]) + [0], box, SITE)
    odd = _odd_x3(lattice)[..., None, None, None]
    line = lattice.local_shape[:3] + (n3, 8, 3, 3)
    links_of_odd = np.zeros(line, dtype=SITE.base)
    np.put_along_axis(links_of_odd, odd, data, axis=3)
    mine = slice(lattice.offset[3], lattice.offset[3] + lattice.local_shape[3])
    is_odd = np.zeros(lattice.local_shape[:3] + (n3,), dtype=bool)
    np.put_along_axis(is_odd, _odd_x3(lattice), True, axis=3)
    is_odd = is_odd[..., mine]
    xp = lattice.xp
    links = xp.empty(lattice.local_shape + (4, 3, 3), dtype=dtype)
    for mu in range(4):
        backward = links_of_odd[..., 2 * mu + 1, :, :]
        if mu == 3:  # x + 3 is on the same line, held whole here
            backward_at_next = np.roll(backward, -1, axis=3)[..., mine, :, :]
        else:
            backward_at_next = lattice.shift(xp.asarray(backward[..., mine, :, :]), mu, +1)
        forward = xp.asarray(links_of_odd[..., mine, 2 * mu, :, :])
        links[..., mu, :, :] = xp.where(xp.asarray(is_odd)[..., None, None], forward,
                                        xp.asarray(backward_at_next))
    return links, found[1]
