"""A rank's block of a global array in a flat binary file, read and written with MPI-IO.

Files of other codes (ILDG, openQCD) store a lattice as one global array in C order, sites of
``site_bytes`` each. A rank's sub-lattice (a box of the global array, in the file's axis order)
is a set of runs of consecutive sites: the box's extents are the global ones from some axis k
on, so each run spans the block's extent along k and everything faster. Each rank writes and
reads its runs at explicit offsets (``MPI_File_write_at``), in parallel with every other rank,
and never holds more than its own block. (File views with derived datatypes would say the
same in one call, but the MPICH of this machine aborts in ROMIO's datatype flattening on
them; explicit offsets work everywhere.)
"""

import math

import numpy as np
from mpi4py import MPI


def on_root(comm, read, error, path):
    """``read()`` on rank 0 of ``comm``, its result broadcast to every rank. An OSError
    (reported as "PATH: unreadable (...)") or an ``error`` there is raised as ``error`` on
    every rank alike, so that no rank waits for the others in vain."""
    result, problem = None, None
    if comm.Get_rank() == 0:
        try:
            result = read()
        except OSError as e:
            problem = f"{path}: unreadable ({e.strerror or e})"
        except error as e:
            problem = str(e)
    result, problem = comm.bcast((result, problem), root=0)
    if problem:
        raise error(problem)
    return result


def runs(global_shape, local_shape, start, site_bytes):
    """(byte offsets of the runs, bytes per run) of the box ``local_shape`` at ``start`` of a
    C-ordered array of ``global_shape`` sites, offsets relative to the array's first byte and
    in the order of the box's own C order."""
    k = len(global_shape) - 1
    while k > 0 and local_shape[k] == global_shape[k]:
        k -= 1
    strides = [math.prod(global_shape[d + 1:]) for d in range(len(global_shape))]
    run_sites = local_shape[k] * strides[k]
    offsets = np.zeros((), dtype=np.int64)
    for d in range(k + 1):
        coords = start[d] + np.arange(local_shape[d] if d < k else 1, dtype=np.int64)
        offsets = offsets[..., None] + coords * strides[d]
    return offsets.ravel() * site_bytes, run_sites * site_bytes


def write_block(comm, path, offset, global_shape, start, block):
    """Write every rank's ``block`` (its box at ``start``, C order, sites = the trailing axes
    after len(global_shape)) into the file ``path`` from byte ``offset`` on (collective: opens
    and closes the file on all ranks of ``comm``; the file must exist)."""
    data = np.ascontiguousarray(block).view(np.uint8).reshape(-1)
    site_bytes = data.size // math.prod(block.shape[:len(global_shape)])
    offsets, run_bytes = runs(global_shape, block.shape[:len(global_shape)], start, site_bytes)
    fh = MPI.File.Open(comm, str(path), MPI.MODE_WRONLY)
    try:
        for i, at in enumerate(offsets):
            fh.Write_at(offset + int(at), data[i * run_bytes:(i + 1) * run_bytes])
        fh.Sync()  # on disk before the file is renamed into place
    finally:
        fh.Close()


def read_block(comm, path, offset, global_shape, start, local_shape, site_dtype):
    """This rank's box ``local_shape`` at ``start`` of the global array of sites of
    ``site_dtype`` (a structured or sub-array dtype) stored from byte ``offset`` of ``path``
    (collective)."""
    site_dtype = np.dtype(site_dtype)
    out = np.empty(tuple(local_shape), dtype=site_dtype)
    data = out.view(np.uint8).reshape(-1)
    offsets, run_bytes = runs(global_shape, local_shape, start, site_dtype.itemsize)
    fh = MPI.File.Open(comm, str(path), MPI.MODE_RDONLY)
    try:
        for i, at in enumerate(offsets):
            fh.Read_at(offset + int(at), data[i * run_bytes:(i + 1) * run_bytes])
    finally:
        fh.Close()
    return out
