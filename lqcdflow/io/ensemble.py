"""The HDF5 ensemble file: run metadata, the Monte Carlo history and observable series.

Layout (format "lqcdflow-ensemble", version 2; readable with plain h5py or h5dump):

    /                         attributes: format, format_version, code_version, created (UTC),
                              host, ranks, grid, volume, run_file (the TOML text) and every
                              run-file key as "section.key" (e.g. "theory.kappa"), and the
                              theory's field ("field", "field.site_shape")
    /mc/trajectory   (n,)     int64, trajectory number 1, 2, ... (thermalisation included)
    /mc/accepted     (n,)     int8, Metropolis decision
    /mc/delta_H      (n,)     float64, H(end) - H(start)
    /observables/trajectory (m,)  int64, trajectory after which each measurement was taken
    /observables/<name> (m, *shape)  every observable the theory declares, float64 or
                              complex128, with its ``description`` as attribute (phi^4:
                              action, m, abs_m, m2, m4, W, correlator (m, L_0); U(1):
                              action, plaquette, polyakov (m, D) complex, and in 2D
                              topological_charge)

Version 1 (phi^4 only, the same datasets) reads and continues the same way.

Only rank 0 touches the file. Records are buffered and committed every ``progress_every``
trajectories and at every checkpoint: the commit writes a copy, fsyncs it and renames it over
the file, so the file on disk is always complete and readable. Each series dataset carries its
SHA-256 as attribute ``sha256`` (checked by ``lqcdflow info``).
"""

import datetime
import math
import os
import shutil
import socket

import h5py
import numpy as np

import lqcdflow
from lqcdflow.io.checksum import array_sha256
from lqcdflow.io.files import replaced_atomically

FORMAT = "lqcdflow-ensemble"
FORMAT_VERSION = 2


class OutputError(RuntimeError):
    """The output file cannot be created or written."""


def _attribute(value):
    """An HDF5-storable form of a run-file value (lists become arrays, None becomes "")."""
    if value is None:
        return ""
    if isinstance(value, list):
        return np.asarray(value)
    return value


def run_attributes(config, theory, run_file_text):
    """Metadata attributes of an ensemble: provenance, every run-file key, the field."""
    lattice = theory.lattice
    attrs = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "code_version": lqcdflow.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "ranks": lattice.size,
        "grid": np.asarray(lattice.grid),
        "volume": lattice.volume,
        "run_file": run_file_text,
        "field": theory.field.name,
        "field.site_shape": np.asarray(theory.field.site_shape, dtype=np.int64),
    }
    for section, keys in config.sections().items():
        for key, value in keys.items():
            attrs[f"{section}.{key}"] = _attribute(value)
    return attrs


def _create_datasets(f, observables):
    for name, dtype in (("trajectory", np.int64), ("accepted", np.int8), ("delta_H", np.float64)):
        f.create_dataset(f"mc/{name}", shape=(0,), maxshape=(None,), dtype=dtype, chunks=(1024,))
    f.create_dataset("observables/trajectory", shape=(0,), maxshape=(None,), dtype=np.int64,
                     chunks=(1024,))
    for obs in observables:
        size = obs.dtype.itemsize * math.prod(obs.shape)
        dataset = f.create_dataset(f"observables/{obs.name}", shape=(0,) + obs.shape,
                                   maxshape=(None,) + obs.shape, dtype=obs.dtype,
                                   chunks=(max(1, 65536 // size),) + obs.shape)
        dataset.attrs["description"] = obs.description


def series_lengths(f):
    """Lengths of the trajectory and measurement series of an open ensemble file."""
    return {"mc": f["mc/trajectory"].shape[0], "observables": f["observables/trajectory"].shape[0]}


def stamp_checksums(f):
    """Store a SHA-256 of every series dataset as its attribute ``sha256`` (see ``info``)."""
    for group in ("mc", "observables"):
        for dataset in f[group].values():
            dataset.attrs["sha256"] = array_sha256(dataset[()])


class EnsembleWriter:
    """Appends trajectory and measurement records to an ensemble file (rank 0 does the I/O).

    Every change is made on a copy that then replaces the file (write, fsync, rename), so the
    file on disk is always complete and a crash never corrupts it. Creation, resumption and
    commits are collective so that an error stops every rank alike.

    Parameters
    ----------
    path : str
    attrs : dict
        Metadata attributes (see :func:`run_attributes`); used when the file is created.
    observables : sequence of lqcdflow.theories.base.Observable
        What the theory measures: one series each.
    comm : mpi4py communicator
    overwrite : bool
        Replace an existing file when starting a new run; otherwise that is an error.
    resume : dict or None
        Committed series lengths ``{"mc": n, "observables": m}`` of a checkpoint to continue
        from: the existing file is truncated to them (records after the checkpoint are made
        again, identically).
    """

    def __init__(self, path, attrs, observables, comm, overwrite=False, resume=None):
        self.path = path
        self.observables = tuple(obs.name for obs in observables)
        self.comm = comm
        self.active = comm.Get_rank() == 0
        self._trajectories = []
        self._measurements = []
        self.lengths = dict(resume) if resume else {"mc": 0, "observables": 0}
        error = None
        if self.active:
            if resume is None:
                error = self._create(attrs, observables, overwrite)
            else:
                error = self._resume(resume)
        self._raise_if(error)

    def _raise_if(self, error):
        error = self.comm.bcast(error, root=0)
        if error:
            raise OutputError(error)

    def _create(self, attrs, observables, overwrite):
        if os.path.exists(self.path) and not overwrite:
            return (f"output file {self.path} exists; set [output] overwrite = true or choose "
                    "another file")
        try:
            with replaced_atomically(self.path) as temporary:
                with h5py.File(temporary, "w") as f:
                    f.attrs.update(attrs)
                    _create_datasets(f, observables)
                    stamp_checksums(f)
        except OSError as e:
            return f"cannot create output file {self.path}: {e}"
        return None

    def _resume(self, lengths):
        if not os.path.exists(self.path):
            return f"output file {self.path} of the run to continue is missing"

        def truncate(f):
            missing = [n for n in self.observables if f"observables/{n}" not in f]
            if missing:
                raise OutputError(f"output file {self.path} has no series "
                                  f"{', '.join(missing)} of this theory; it belongs to "
                                  "another run")
            have = series_lengths(f)
            if any(have[k] < lengths[k] for k in lengths):
                raise OutputError(f"output file {self.path} holds fewer records {have} than "
                                  f"the checkpoint says were written {lengths}")
            for group in ("mc", "observables"):
                for dataset in f[group].values():
                    dataset.resize(lengths[group], axis=0)
        return self._rewrite(truncate)

    def _rewrite(self, change):
        """Apply ``change(h5py.File)`` to a copy of the file, then atomically replace it."""
        try:
            with replaced_atomically(self.path) as temporary:
                shutil.copyfile(self.path, temporary)
                with h5py.File(temporary, "a") as f:
                    if f.attrs.get("format") != FORMAT:
                        raise OutputError(f"{self.path} is not an lqcdflow ensemble file")
                    change(f)
                    stamp_checksums(f)
        except OutputError as e:
            return str(e)
        except OSError as e:
            return f"cannot write output file {self.path}: {e}"
        return None

    def record_trajectory(self, info):
        if self.active:
            self._trajectories.append((info.trajectory, info.accepted, info.delta_H))

    def record_measurement(self, trajectory, observables):
        if self.active:
            self._measurements.append((trajectory, observables))

    def commit(self):
        """Append the buffered records to the file (collective; atomic on disk).

        Returns the committed series lengths (the same dict on every rank).
        """
        lengths, error = self.lengths, None
        if self.active and (self._trajectories or self._measurements):
            def append(f):
                if self._trajectories:
                    columns = list(zip(*self._trajectories))
                    for name, column in zip(("trajectory", "accepted", "delta_H"), columns):
                        _append(f[f"mc/{name}"], np.asarray(column))
                if self._measurements:
                    _append(f["observables/trajectory"],
                            np.asarray([t for t, _ in self._measurements]))
                    for name in self.observables:
                        _append(f[f"observables/{name}"],
                                np.asarray([obs[name] for _, obs in self._measurements]))
                nonlocal lengths
                lengths = series_lengths(f)
            error = self._rewrite(append)
            self._trajectories.clear()
            self._measurements.clear()
        self._raise_if(error)
        self.lengths = self.comm.bcast(lengths, root=0)
        return self.lengths


def _append(dataset, values):
    n = dataset.shape[0]
    dataset.resize(n + len(values), axis=0)
    dataset[n:] = values
