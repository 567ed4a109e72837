"""Field configurations of an ensemble, written collectively with parallel HDF5.

Layout of ``[output] configurations`` (format "lqcdflow-configurations", version 2):

    /                          the run's metadata attributes (as in the ensemble file), and
                               ``field``, the name of the theory's field
    /configurations/<field>    (n, L_0, ..., L_{D-1}, *site shape), extendible, global
                               lexicographic order, chunked one configuration per chunk
                               (``phi`` for phi^4, ``theta`` for U(1); version 1: phi^4 only)
    /configurations/trajectory (n,) int64
    /configurations/checksum   (n,) uint64, decomposition-independent field checksums, with
                               attribute ``checksum_version`` (absent: version 1)

Each rank writes its hyperslab of every configuration (``driver="mpio"``). The file is appended
in place (a configuration can be ~GiB, too large to copy); a checkpoint records how many
configurations it covers, and a restart truncates the file back to that count.
"""

import os

import h5py
import numpy as np

from lqcdflow.io import checksum as checksums
from lqcdflow.io.ensemble import DamagedError, OutputError
from lqcdflow.io.files import READ_ERRORS, free_space_problem, reason
from lqcdflow.io.h5 import FieldFile

FORMAT = "lqcdflow-configurations"
FORMAT_VERSION = 2


def _datasets(spec):
    """The datasets under /configurations of a file of ``spec``'s field."""
    return (spec.name, "trajectory", "checksum")


def _stored(file, path, spec, shape):
    """(how many configurations ``file`` holds, the version of their checksums), or why it
    cannot be read or continued as a file of ``spec``'s field on a lattice of ``shape`` (a
    str)."""
    if file.attrs.get("format") != FORMAT or any(
            f"configurations/{name}" not in file for name in _datasets(spec)):
        return f"{path} is not an lqcdflow configuration file of the field {spec.name}"
    if not checksums.attributes_intact(file):
        return (f"configuration file {path} is damaged: its attributes do not match their "
                "hash; lqcdflow info tells more")
    stored_shape = file[f"configurations/{spec.name}"].shape[1:]
    expected = tuple(shape) + spec.site_shape
    if stored_shape != expected:
        return (f"configuration file {path} holds fields of shape {list(stored_shape)}, the "
                f"run's are {list(expected)}")
    version = int(file["configurations/checksum"].attrs.get("checksum_version", 1))
    if version not in checksums.VERSIONS:
        return (f"configuration file {path} has checksums of version {version}, "
                "written by a newer lqcdflow; update lqcdflow")
    return file["configurations/trajectory"].shape[0], version


def _holds_configurations(path, spec, shape):
    """False only for a configuration file of this field that holds none yet (left by a run
    that stopped before its first; replacing it loses nothing)."""
    try:
        with h5py.File(path, "r") as f:
            stored = _stored(f, path, spec, shape)
    except READ_ERRORS:
        return True
    return isinstance(stored, str) or stored[0] != 0


class ConfigurationReader:
    """The configurations of a file, read one at a time and verified (collective).

    Parameters
    ----------
    path : str
    theory : lqcdflow.theories.base.Theory
        Its FieldSpec names the dataset; its lattice reads it, in any decomposition.

    Attributes
    ----------
    count : int
        Configurations in the file.
    attrs : dict
        The file's attributes (the run that wrote it).

    Use as a context manager. Raises OutputError (one line, on every rank alike) for a file
    that cannot be read or is not one of this field on this lattice, and DamagedError for a
    configuration whose checksum does not verify.
    """

    def __init__(self, path, theory):
        self.path, self.lattice, self.spec = path, theory.lattice, theory.field
        lattice = self.lattice
        try:
            self.file = FieldFile(path, "r", lattice)
            header = None
        except READ_ERRORS as e:
            self.file, header = None, f"configuration file {path}: unreadable " \
                f"({reason(e)})"
        header = lattice.comm.allgather(header)
        if any(header):
            raise OutputError(next(h for h in header if h))
        header = None
        if lattice.rank == 0:
            try:
                header = _stored(self.file.file, path, self.spec, lattice.shape)
                if not isinstance(header, str):
                    header = (*header, dict(self.file.file.attrs),
                              self.file.file["configurations/trajectory"][()],
                              self.file.file["configurations/checksum"][()])
            except READ_ERRORS as e:
                header = f"configuration file {path}: unreadable ({reason(e)})"
        header = lattice.comm.bcast(header, root=0)
        if isinstance(header, str):
            self.file.__exit__()
            raise OutputError(header)
        self.count, self.version, self.attrs, self.trajectories, self.checksums = header

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.__exit__(*exc)

    def read(self, index):
        """(field on this rank, trajectory) of configuration ``index``, its checksum
        verified."""
        field = self.file.read_field(f"configurations/{self.spec.name}", index=(index,))
        trajectory = int(self.trajectories[index])
        if checksums.field_checksum(self.lattice, field, self.version) \
                != int(self.checksums[index]):
            raise DamagedError(f"configuration file {self.path}: configuration {index} "
                               f"(trajectory {trajectory}): field checksum mismatch "
                               "(data corrupt)")
        return field, trajectory


class ConfigurationWriter:
    """Save every ``every``-th configuration of a chain (collective).

    Parameters
    ----------
    path : str
    theory : lqcdflow.theories.base.Theory
        Its FieldSpec names the dataset; its lattice writes it.
    attrs : dict
        Run metadata, written when the file is created.
    every : int
    overwrite : bool
    resume : int or None
        Number of configurations a checkpoint covers; the existing file is truncated to it.
    """

    def __init__(self, path, theory, attrs, every, overwrite=False, resume=None):
        lattice = theory.lattice
        self.path, self.lattice, self.spec, self.every = path, lattice, theory.field, every
        exists = lattice.comm.bcast(os.path.exists(path) if lattice.rank == 0 else None)
        if resume is None and exists and not overwrite and lattice.comm.bcast(
                _holds_configurations(path, self.spec, lattice.shape)
                if lattice.rank == 0 else None):
            raise OutputError(f"configuration file {path} exists; set [output] overwrite = "
                              "true or choose another file")
        if resume is not None and not exists:
            raise OutputError(f"configuration file {path} of the run to continue is missing")
        self.count = 0
        self.checksum_version = checksums.VERSION  # a continued file keeps its own
        try:
            if resume is None:
                self._create(attrs)
            else:
                self._truncate(resume)
        except OSError as e:
            raise OutputError(f"cannot write configuration file {path}: "
                              f"{reason(e)}") from None

    def _create(self, attrs):
        with FieldFile(self.path, "w", self.lattice) as f:
            f.create_field(f"configurations/{self.spec.name}",
                           self.spec.dtype(self.lattice.backend.dtype), self.spec.site_shape,
                           leading=(0,), maxleading=(None,))
            if f.root:
                f.file.create_dataset("configurations/trajectory", (0,), np.int64,
                                      maxshape=(None,), chunks=(1024,))
                f.file.create_dataset("configurations/checksum", (0,), np.uint64,
                                      maxshape=(None,), chunks=(1024,))
                f.file["configurations/checksum"].attrs["checksum_version"] = checksums.VERSION
                f.file.attrs.update(attrs)
                f.file.attrs["format"] = FORMAT
                f.file.attrs["format_version"] = FORMAT_VERSION
                f.file.attrs["field"] = self.spec.name
                f.file[f"configurations/{self.spec.name}"].attrs["description"] = \
                    self.spec.description
                checksums.seal_attributes(f.file)

    def _truncate(self, count):
        with FieldFile(self.path, "a", self.lattice) as f:
            stored = _stored(f.file, self.path, self.spec, self.lattice.shape) if f.file \
                else None
            stored = self.lattice.comm.bcast(stored, root=0)
            if isinstance(stored, str):
                raise OutputError(stored)
            have, self.checksum_version = stored
            if have < count:
                raise OutputError(f"configuration file {self.path} holds fewer than the "
                                  f"{count} configurations the checkpoint expects")
            if f.root:
                for name in _datasets(self.spec):
                    f.file[f"configurations/{name}"].resize(count, axis=0)
        self.count = count

    def save(self, state):
        """Append ``state.field`` if its trajectory is a multiple of ``every``."""
        if state.trajectory % self.every:
            return
        checksum = checksums.field_checksum(self.lattice, state.field, self.checksum_version)
        lat = self.lattice
        problem = free_space_problem(os.path.dirname(os.path.abspath(self.path)),
                                     lat.volume * state.field[(0,) * lat.ndim].nbytes,
                                     f"configuration {self.count} to {self.path}")
        problem = lat.comm.bcast(problem if lat.rank == 0 else None, root=0)
        if problem:
            raise OutputError(problem)
        n = self.count
        with FieldFile(self.path, "a", self.lattice) as f:
            if f.root:
                for name in _datasets(self.spec):
                    f.file[f"configurations/{name}"].resize(n + 1, axis=0)
            f.write_field(f"configurations/{self.spec.name}", state.field, index=(n,))
            if f.root:
                f.file["configurations/trajectory"][n] = state.trajectory
                f.file["configurations/checksum"][n] = np.uint64(checksum)
        self.count = n + 1
