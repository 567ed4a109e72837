"""Field configurations of an ensemble, written collectively with parallel HDF5.

Layout of ``[output] configurations`` (format "lqcdflow-configurations", version 1):

    /                          the run's metadata attributes (as in the ensemble file)
    /configurations/phi        (n, L_0, ..., L_{D-1}), extendible, global lexicographic order,
                               chunked one configuration per chunk
    /configurations/trajectory (n,) int64
    /configurations/checksum   (n,) uint64, decomposition-independent field checksums

Each rank writes its hyperslab of every configuration (``driver="mpio"``). The file is appended
in place (a configuration can be ~GiB, too large to copy); a checkpoint records how many
configurations it covers, and a restart truncates the file back to that count.
"""

import os

import numpy as np

from lqcdflow.io.checksum import field_checksum
from lqcdflow.io.ensemble import OutputError
from lqcdflow.io.files import free_space_problem
from lqcdflow.io.h5 import FieldFile

FORMAT = "lqcdflow-configurations"
FORMAT_VERSION = 1


class ConfigurationWriter:
    """Save every ``every``-th configuration of a chain (collective).

    Parameters
    ----------
    path : str
    lattice : Lattice
    attrs : dict
        Run metadata, written when the file is created.
    every : int
    overwrite : bool
    resume : int or None
        Number of configurations a checkpoint covers; the existing file is truncated to it.
    """

    def __init__(self, path, lattice, attrs, every, overwrite=False, resume=None):
        self.path, self.lattice, self.every = path, lattice, every
        exists = lattice.comm.bcast(os.path.exists(path) if lattice.rank == 0 else None)
        if resume is None and exists and not overwrite:
            raise OutputError(f"configuration file {path} exists; set [output] overwrite = "
                              "true or choose another file")
        if resume is not None and not exists:
            raise OutputError(f"configuration file {path} of the run to continue is missing")
        self.count = 0
        try:
            if resume is None:
                self._create(attrs)
            else:
                self._truncate(resume)
        except OSError as e:
            raise OutputError(f"cannot write configuration file {path}: "
                              f"{str(e).splitlines()[0]}") from None

    def _create(self, attrs):
        with FieldFile(self.path, "w", self.lattice) as f:
            f.create_field("configurations/phi", self.lattice.backend.dtype, leading=(0,),
                           maxleading=(None,))
            if f.root:
                f.file.create_dataset("configurations/trajectory", (0,), np.int64,
                                      maxshape=(None,), chunks=(1024,))
                f.file.create_dataset("configurations/checksum", (0,), np.uint64,
                                      maxshape=(None,), chunks=(1024,))
                f.file.attrs.update(attrs)
                f.file.attrs["format"] = FORMAT
                f.file.attrs["format_version"] = FORMAT_VERSION

    def _truncate(self, count):
        with FieldFile(self.path, "a", self.lattice) as f:
            have = self._stored(f.file) if f.file else None
            have = self.lattice.comm.bcast(have, root=0)
            if isinstance(have, str):
                raise OutputError(have)
            if have < count:
                raise OutputError(f"configuration file {self.path} holds fewer than the "
                                  f"{count} configurations the checkpoint expects")
            if f.root:
                for name in ("phi", "trajectory", "checksum"):
                    f.file[f"configurations/{name}"].resize(count, axis=0)
        self.count = count

    def _stored(self, file):
        """How many configurations ``file`` holds, or why it cannot be continued (a str)."""
        if file.attrs.get("format") != FORMAT or any(
                f"configurations/{name}" not in file for name in ("phi", "trajectory", "checksum")):
            return f"{self.path} is not an lqcdflow configuration file"
        shape = file["configurations/phi"].shape[1:]
        if shape != self.lattice.shape:
            return (f"configuration file {self.path} holds a {list(shape)} lattice, the run "
                    f"a {list(self.lattice.shape)} one")
        return file["configurations/trajectory"].shape[0]

    def save(self, state):
        """Append ``state.phi`` if its trajectory is a multiple of ``every``."""
        if state.trajectory % self.every:
            return
        checksum = field_checksum(self.lattice, state.phi)
        lat = self.lattice
        problem = free_space_problem(os.path.dirname(os.path.abspath(self.path)),
                                     lat.volume * lat.backend.dtype.itemsize,
                                     f"configuration {self.count} to {self.path}")
        problem = lat.comm.bcast(problem if lat.rank == 0 else None, root=0)
        if problem:
            raise OutputError(problem)
        n = self.count
        with FieldFile(self.path, "a", self.lattice) as f:
            if f.root:
                for name in ("phi", "trajectory", "checksum"):
                    f.file[f"configurations/{name}"].resize(n + 1, axis=0)
            f.write_field("configurations/phi", state.phi, index=(n,))
            if f.root:
                f.file["configurations/trajectory"][n] = state.trajectory
                f.file["configurations/checksum"][n] = np.uint64(checksum)
        self.count = n + 1
