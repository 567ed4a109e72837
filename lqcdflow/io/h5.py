"""Global lattice fields in HDF5 files, written and read by all ranks.

With an MPI-enabled h5py, every rank writes and reads its own hyperslab of the global dataset
(``driver="mpio"``, collective transfers). Without one, the same calls fall back to a serial
path: rank 0 holds the file and the blocks travel to or from it one rank at a time, so no rank
ever holds more than its own block plus one other (a warning says so once).
"""

import math
import warnings

import h5py
import numpy as np

PARALLEL = h5py.get_config().mpi
_warned = []


def _warn_serial():
    if not _warned:
        warnings.warn("h5py has no MPI support: lattice fields go through rank 0 "
                      "(serial HDF5, bounded memory); install parallel h5py for MPI-IO",
                      RuntimeWarning, stacklevel=3)
        _warned.append(True)


CHUNK_BYTES = 1 << 30  # HDF5 refuses chunks of 4 GiB or more


def field_chunk(field_shape, dtype):
    """The chunk of one field: the whole field, or, above CHUNK_BYTES, blocks halved along the
    slowest axes first until one fits (e.g. an SU(3) field of 64^3 x 128 sites is 9.7 GB)."""
    chunk = list(field_shape)
    itemsize = np.dtype(dtype).itemsize
    for axis in range(len(chunk)):
        while chunk[axis] > 1 and itemsize * math.prod(chunk) > CHUNK_BYTES:
            chunk[axis] = -(-chunk[axis] // 2)
    return tuple(chunk)


class FieldFile:
    """An HDF5 file opened by every rank of ``lattice`` for global-field I/O.

    Use as a context manager. ``file`` is the h5py File on every rank (parallel) or on rank 0
    only (serial fallback; None elsewhere); attributes and small datasets should be read and
    written through rank 0 in the serial case (:attr:`root`).
    """

    def __init__(self, path, mode, lattice, parallel=PARALLEL):
        self.lattice = lattice
        self.parallel = parallel
        if parallel:
            self.file = h5py.File(path, mode, driver="mpio", comm=lattice.comm)
        else:
            _warn_serial()
            self.file = h5py.File(path, mode) if lattice.rank == 0 else None

    @property
    def root(self):
        """True where this rank may touch the file's attributes and small datasets."""
        return self.parallel or self.lattice.rank == 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.file is not None:
            self.file.close()

    def create_field(self, name, dtype, site_shape=(), leading=(), maxleading=None):
        """Create a dataset of shape leading + global lattice shape + site shape
        (collectively)."""
        field_shape = self.lattice.shape + tuple(site_shape)
        shape = tuple(leading) + field_shape
        maxshape = None if maxleading is None else tuple(maxleading) + field_shape
        if self.file is not None:
            chunks = (1,) * len(leading) + field_chunk(field_shape, dtype) if maxshape else None
            self.file.create_dataset(name, shape=shape, maxshape=maxshape, dtype=dtype,
                                     chunks=chunks)

    def write_field(self, name, field, index=()):
        """Write this rank's block of ``field`` into dataset ``name`` at leading ``index``."""
        lat = self.lattice
        local = np.ascontiguousarray(lat.backend.asnumpy(field))
        if self.parallel:
            dset = self.file[name]
            with dset.collective:
                dset[tuple(index) + lat.local_slices()] = local
            return
        if lat.rank == 0:
            dset = self.file[name]
            dset[tuple(index) + lat.local_slices()] = local
            for source in range(1, lat.size):
                slices = lat.comm.recv(source=source, tag=11)
                dset[tuple(index) + slices] = lat.comm.recv(source=source, tag=12)
        else:
            lat.comm.send(lat.local_slices(), dest=0, tag=11)
            lat.comm.send(local, dest=0, tag=12)

    def read_field(self, name, index=()):
        """This rank's block of dataset ``name`` at leading ``index``, as a backend array."""
        lat = self.lattice
        if self.parallel:
            dset = self.file[name]
            with dset.collective:
                local = dset[tuple(index) + lat.local_slices()]
            return lat.xp.asarray(local)
        if lat.rank == 0:
            dset = self.file[name]
            for dest in range(1, lat.size):
                slices = lat.comm.recv(source=dest, tag=13)
                lat.comm.send(dset[tuple(index) + slices], dest=dest, tag=14)
            local = dset[tuple(index) + lat.local_slices()]
        else:
            lat.comm.send(lat.local_slices(), dest=0, tag=13)
            local = lat.comm.recv(source=0, tag=14)
        return lat.xp.asarray(np.ascontiguousarray(local))
