"""Checkpoints: everything needed to continue a Markov chain, on any number of ranks.

One HDF5 file per checkpoint, ``DIR/checkpoint_<trajectory:08d>.h5``:

    /                 attributes: format "lqcdflow-checkpoint", format_version, code_version,
                      created, ranks, grid, trajectory, accepted, the run's identity
                      (lattice.shape, theory.*, run.seed, run.dtype), the committed lengths
                      of the output (output.mc, output.observables, output.configurations),
                      and ``state_sha256``, a SHA-256 of all of these
    /fields/phi       the field in global lexicographic layout, attribute ``checksum``
                      (decomposition-independent, see lqcdflow.io.checksum)

The random numbers are counter-based, so (seed, trajectory) is the whole generator state.
Writing is atomic: all ranks write ``DIR/.checkpoint_<t>.h5.tmp`` collectively, rank 0 fsyncs
and renames it, then deletes all but the newest ``keep``; a crash at any instant leaves the
previous checkpoints intact. Reading verifies the state hash and every field checksum.
"""

import datetime
import glob
import hashlib
import json
import os
import re
import threading

import h5py
import numpy as np

import lqcdflow
from lqcdflow.io.checksum import field_checksum
from lqcdflow.io.files import free_space_problem, fsync
from lqcdflow.io.h5 import FieldFile

FORMAT = "lqcdflow-checkpoint"
FORMAT_VERSION = 1
_NAME = re.compile(r"checkpoint_(\d{8,})\.h5$")
# Run-file keys a checkpoint must agree with to continue the same chain.
IDENTITY = ("lattice.shape", "theory.name", "theory.form", "theory.kappa", "theory.m2",
            "theory.lambda", "run.seed", "run.dtype")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, corrupt or belongs to another run."""


def checkpoint_path(directory, trajectory):
    return os.path.join(directory, f"checkpoint_{trajectory:08d}.h5")


def list_checkpoints(directory):
    """Checkpoint files in ``directory``, newest (highest trajectory) first."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(directory), "checkpoint_*.h5")):
        match = _NAME.search(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found, reverse=True)]


def _state_hash(attrs):
    """SHA-256 over the checkpoint's scalar state (canonical JSON of sorted attributes)."""
    canonical = {k: (v.tolist() if isinstance(v, np.ndarray) else
                     v.item() if isinstance(v, np.generic) else v)
                 for k, v in sorted(attrs.items()) if k != "state_sha256"}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def identity(config):
    """The run-file values that define which chain a checkpoint belongs to."""
    out = {}
    for key in IDENTITY:
        section, name = key.split(".")
        value = config[section][name]
        out[key] = "" if value is None else value
    return out


def _agreed(comm, problem):
    """Raise CheckpointError on every rank if ``problem`` (a message or None) is set on any."""
    problem = next((p for p in comm.allgather(problem) if p), None)
    if problem:
        raise CheckpointError(problem)


def _try_fsync(path, errors):
    try:
        fsync(path)
    except OSError as e:
        errors.append(e)


def save(directory, lattice, state, config, extra, keep):
    """Write the checkpoint of ``state`` atomically and keep the newest ``keep``; return its path.

    ``extra`` holds further scalar attributes (e.g. committed output lengths).
    Collective: every rank of ``lattice`` must call it. Raises CheckpointError on failure
    (every rank alike), leaving existing checkpoints untouched.
    """
    final = checkpoint_path(directory, state.trajectory)
    temporary = os.path.join(directory, f".checkpoint_{state.trajectory:08d}.h5.tmp")
    attrs = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "code_version": lqcdflow.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "ranks": lattice.size, "grid": list(lattice.grid),
        "trajectory": state.trajectory, "accepted": state.accepted,
        **identity(config), **extra,
    }
    attrs["state_sha256"] = _state_hash(attrs)
    problem = None
    if lattice.rank == 0:
        try:
            os.makedirs(directory, exist_ok=True)
            nbytes = lattice.volume * lattice.backend.dtype.itemsize
            problem = free_space_problem(directory, nbytes, f"checkpoint {final}")
        except OSError as e:
            problem = f"cannot create checkpoint directory {directory}: {e.strerror}"
    _agreed(lattice.comm, problem)
    try:
        with FieldFile(temporary, "w", lattice) as f:
            f.create_field("fields/phi", lattice.backend.dtype)
            f.write_field("fields/phi", state.phi)
            if f.root:
                f.file.attrs.update(attrs)
    except OSError as e:
        if lattice.size > 1:
            raise  # other ranks may wait inside collective MPI-IO: abort the job (comm.guarded)
        problem = f"cannot write checkpoint {final}: {e}"
    # The field goes to disk (fsync releases the GIL) while every rank checksums its block;
    # the checksum attribute is added afterwards, before the final fsync and rename.
    syncing, sync_errors = None, []
    if lattice.rank == 0 and problem is None:
        syncing = threading.Thread(target=_try_fsync, args=(temporary, sync_errors))
        syncing.start()
    checksum = field_checksum(lattice, state.phi)
    if syncing:
        syncing.join()
        try:
            if sync_errors:
                raise sync_errors[0]
            with h5py.File(temporary, "r+") as f:
                f["fields/phi"].attrs["checksum"] = np.uint64(checksum)
            fsync(temporary)
            os.replace(temporary, final)
            fsync(directory)
            for old in list_checkpoints(directory)[keep:]:
                os.remove(old)
            # temporaries of writes that a crash interrupted
            for stale in glob.glob(os.path.join(glob.escape(directory), ".checkpoint_*.h5.tmp")):
                os.remove(stale)
        except OSError as e:
            problem = f"cannot commit checkpoint {final}: {e}"
    if lattice.rank == 0 and problem and os.path.exists(temporary):
        os.remove(temporary)
    _agreed(lattice.comm, problem)
    return final


def load(path, lattice):
    """Read and verify the checkpoint at ``path``: (field on this rank, attribute dict).

    Collective. Raises CheckpointError (on every rank alike) naming the file and the fault.
    HDF5 detects a truncated file when opening it, so the collective read only starts on
    files whose structure is intact.
    """
    try:
        f = FieldFile(path, "r", lattice)
        problem = None
    except OSError as e:
        f, problem = None, f"{path}: unreadable ({str(e).splitlines()[0]})"
    _agreed(lattice.comm, problem)
    with f:
        header = None
        if lattice.rank == 0:
            try:
                header = (dict(f.file.attrs), int(f.file["fields/phi"].attrs["checksum"]))
                if header[0].get("format") != FORMAT:
                    header = f"{path}: not an lqcdflow checkpoint"
                elif header[0].get("state_sha256") != _state_hash(header[0]):
                    header = f"{path}: state hash mismatch (attributes corrupt)"
            except (OSError, KeyError) as e:
                header = f"{path}: incomplete ({e})"
        header = lattice.comm.bcast(header, root=0)
        if isinstance(header, str):
            raise CheckpointError(header)
        attrs, stored = header
        phi = f.read_field("fields/phi")
    if field_checksum(lattice, phi) != stored:
        raise CheckpointError(f"{path}: field checksum mismatch (data corrupt)")
    return phi, attrs


def newest_trajectory(directory):
    """(trajectory, path) of the newest checkpoint whose attributes read, or (0, None).

    A quick look for job scripts (no field verification; a restart verifies).
    """
    for path in list_checkpoints(directory):
        try:
            with h5py.File(path, "r") as f:
                if f.attrs.get("format") == FORMAT:
                    return int(f.attrs["trajectory"]), path
        except (OSError, KeyError):
            continue
    return 0, None
