"""The HDF5 ensemble file: run metadata, the Monte Carlo history and observable series.

Layout (format "lqcdflow-ensemble", version 1; readable with plain h5py or h5dump):

    /                         attributes: format, format_version, code_version, created (UTC),
                              host, ranks, grid, volume, run_file (the TOML text) and every
                              run-file key as "section.key" (e.g. "theory.kappa")
    /mc/trajectory   (n,)     int64, trajectory number 1, 2, ... (thermalisation included)
    /mc/accepted     (n,)     int8, Metropolis decision
    /mc/delta_H      (n,)     float64, H(end) - H(start)
    /observables/trajectory (m,)  int64, trajectory after which each measurement was taken
    /observables/{action, m, abs_m, m2, m4, W}  (m,) float64
    /observables/correlator (m, L_0)  float64

Only rank 0 touches the file. Records are buffered and appended at each flush; the file is
opened and closed around every flush, so it is complete and readable between flushes.
"""

import datetime
import os
import socket

import h5py
import numpy as np

import lqcdflow

FORMAT = "lqcdflow-ensemble"
FORMAT_VERSION = 1
SCALAR_OBSERVABLES = ("action", "m", "abs_m", "m2", "m4", "W")


class OutputError(RuntimeError):
    """The output file cannot be created or written."""


def _attribute(value):
    """An HDF5-storable form of a run-file value (lists become arrays, None becomes "")."""
    if value is None:
        return ""
    if isinstance(value, list):
        return np.asarray(value)
    return value


def run_attributes(config, lattice, run_file_text):
    """Metadata attributes of an ensemble: provenance plus every run-file key."""
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
    }
    for section, keys in config.items():
        for key, value in keys.items():
            attrs[f"{section}.{key}"] = _attribute(value)
    return attrs


def _create_datasets(f, correlator_length):
    for name, dtype in (("trajectory", np.int64), ("accepted", np.int8), ("delta_H", np.float64)):
        f.create_dataset(f"mc/{name}", shape=(0,), maxshape=(None,), dtype=dtype, chunks=(1024,))
    f.create_dataset("observables/trajectory", shape=(0,), maxshape=(None,), dtype=np.int64,
                     chunks=(1024,))
    for name in SCALAR_OBSERVABLES:
        f.create_dataset(f"observables/{name}", shape=(0,), maxshape=(None,), dtype=np.float64,
                         chunks=(1024,))
    f.create_dataset("observables/correlator", shape=(0, correlator_length),
                     maxshape=(None, correlator_length), dtype=np.float64,
                     chunks=(max(1, 65536 // (8 * correlator_length)), correlator_length))


class EnsembleWriter:
    """Appends trajectory and measurement records to an ensemble file (a no-op off rank 0).

    Parameters
    ----------
    path : str
    attrs : dict
        Metadata attributes (see :func:`run_attributes`).
    correlator_length : int
        L_0.
    comm : mpi4py communicator
        All ranks of the run; creation is collective so every rank sees the same error.
    overwrite : bool
        Replace an existing file; otherwise an existing file is an error and stays untouched.
    """

    def __init__(self, path, attrs, correlator_length, comm, overwrite=False):
        self.path = path
        self.active = comm.Get_rank() == 0
        error = None
        if self.active:
            error = self._create(attrs, correlator_length, overwrite)
        error = comm.bcast(error, root=0)
        if error:
            raise OutputError(error)
        self._trajectories = []
        self._measurements = []

    def _create(self, attrs, correlator_length, overwrite):
        if os.path.exists(self.path) and not overwrite:
            return (f"output file {self.path} exists; set [output] overwrite = true or choose "
                    "another file")
        try:
            with h5py.File(self.path, "w") as f:
                f.attrs.update(attrs)
                _create_datasets(f, correlator_length)
        except OSError as e:
            return f"cannot create output file {self.path}: {e}"
        return None

    def record_trajectory(self, info):
        if self.active:
            self._trajectories.append((info.trajectory, info.accepted, info.delta_H))

    def record_measurement(self, trajectory, observables):
        if self.active:
            self._measurements.append((trajectory, observables))

    def flush(self):
        """Append the buffered records to the file."""
        if not self.active or not (self._trajectories or self._measurements):
            return
        with h5py.File(self.path, "a") as f:
            if self._trajectories:
                columns = list(zip(*self._trajectories))
                for name, column in zip(("trajectory", "accepted", "delta_H"), columns):
                    _append(f[f"mc/{name}"], np.asarray(column))
            if self._measurements:
                _append(f["observables/trajectory"],
                        np.asarray([t for t, _ in self._measurements]))
                for name in SCALAR_OBSERVABLES + ("correlator",):
                    _append(f[f"observables/{name}"],
                            np.asarray([obs[name] for _, obs in self._measurements]))
        self._trajectories.clear()
        self._measurements.clear()


def _append(dataset, values):
    n = dataset.shape[0]
    dataset.resize(n + len(values), axis=0)
    dataset[n:] = values
