"""Checkpoints: everything needed to continue a Markov chain, on any number of ranks.

One HDF5 file per checkpoint, ``DIR/checkpoint_<trajectory:08d>.h5``:

    /                 attributes: format "lqcdflow-checkpoint", format_version, code_version,
                      created, ranks, grid, trajectory, accepted, the run's identity
                      (lattice.shape, every theory.* key, run.seed, run.dtype), the field's
                      name (``field``), the committed lengths
                      of the output (output.mc, output.observables, output.configurations),
                      ``state_sha256``, a SHA-256 of all of these, and
                      ``attributes_sha256``, the hash of every attribute in the file
                      (lqcdflow.io.checksum.seal_attributes; absent in older files)
    /fields/<name>    the theory's field (``phi`` for phi^4, ``theta`` for U(1)) in global
                      lexicographic layout, site shape last, attributes ``checksum``
                      (decomposition-independent, see lqcdflow.io.checksum) and
                      ``checksum_version`` (absent: version 1)

Format version 2 names the field after the theory's FieldSpec and stores any site shape;
version 1 (phi^4 only, ``fields/phi``) reads the same way.

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
from lqcdflow.io import checksum as checksums
from lqcdflow.io import probe
from lqcdflow.io.files import READ_ERRORS, free_space_problem, fsync, reason
from lqcdflow.io.h5 import FieldFile
from lqcdflow.theories.base import FieldSpec

FORMAT = "lqcdflow-checkpoint"
FORMAT_VERSION = 2
VERSION_1_FIELD = "phi"  # files of format version 1 (before the "field" attribute): phi^4's
_NAME = re.compile(r"checkpoint_(\d{8,})\.h5$")
# Run-file keys a checkpoint must agree with to continue the same chain, besides theory.*.
IDENTITY = ("lattice.shape", "run.seed", "run.dtype")


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
                 for k, v in sorted(attrs.items())
                 if k not in ("state_sha256", checksums.ATTRIBUTES_HASH)}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def identity(config):
    """The run-file values that define which chain a checkpoint belongs to: the lattice, all
    of the theory's keys, the seed and the precision."""
    sections = config.sections()
    # the theory first: a mismatch is reported by its first key, and the theory says most
    keys = [f"theory.{name}" for name in sections["theory"]] + list(IDENTITY)
    out = {}
    for key in keys:
        section, name = key.split(".")
        value = sections[section][name]
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


def save(directory, lattice, spec, state, config, extra, keep):
    """Write the checkpoint of ``state`` atomically and keep the newest ``keep``; return its path.

    ``extra`` holds further scalar attributes (e.g. committed output lengths).
    ``spec`` is the FieldSpec of ``state.field``. Collective: every rank of ``lattice`` must
    call it. Raises CheckpointError on failure
    (every rank alike), leaving existing checkpoints untouched.
    """
    dataset = f"fields/{spec.name}"
    final = checkpoint_path(directory, state.trajectory)
    temporary = os.path.join(directory, f".checkpoint_{state.trajectory:08d}.h5.tmp")
    attrs = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "code_version": lqcdflow.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "ranks": lattice.size, "grid": list(lattice.grid),
        "trajectory": state.trajectory, "accepted": state.accepted, "field": spec.name,
        **identity(config), **extra,
    }
    attrs["state_sha256"] = _state_hash(attrs)
    problem = None
    if lattice.rank == 0:
        try:
            os.makedirs(directory, exist_ok=True)
            nbytes = lattice.volume * state.field[(0,) * lattice.ndim].nbytes
            problem = free_space_problem(directory, nbytes, f"checkpoint {final}")
        except OSError as e:
            problem = f"cannot create checkpoint directory {directory}: {e.strerror}"
    _agreed(lattice.comm, problem)
    try:
        with FieldFile(temporary, "w", lattice) as f:
            f.create_field(dataset, state.field.dtype, spec.site_shape)
            f.write_field(dataset, state.field)
            if f.root:
                f.file[dataset].attrs["description"] = spec.description
            if f.root:
                f.file.attrs.update(attrs)
    except OSError as e:
        if lattice.size > 1:
            raise  # other ranks may wait inside collective MPI-IO: abort the job (comm.guarded)
        problem = f"cannot write checkpoint {final}: {reason(e)}"
    # The field goes to disk (fsync releases the GIL) while every rank checksums its block;
    # the checksum attribute is added afterwards, before the final fsync and rename.
    syncing, sync_errors = None, []
    if lattice.rank == 0 and problem is None:
        syncing = threading.Thread(target=_try_fsync, args=(temporary, sync_errors))
        syncing.start()
    checksum = checksums.field_checksum(lattice, state.field)
    if syncing:
        syncing.join()
        try:
            if sync_errors:
                raise sync_errors[0]
            with h5py.File(temporary, "r+") as f:
                f[dataset].attrs["checksum"] = np.uint64(checksum)
                f[dataset].attrs["checksum_version"] = checksums.VERSION
                checksums.seal_attributes(f)
            fsync(temporary)
            os.replace(temporary, final)
            fsync(directory)
            for old in list_checkpoints(directory)[keep:]:
                os.remove(old)
            # temporaries of writes that a crash interrupted
            for stale in glob.glob(os.path.join(glob.escape(directory), ".checkpoint_*.h5.tmp")):
                os.remove(stale)
        except OSError as e:
            problem = f"cannot commit checkpoint {final}: {reason(e)}"
    if lattice.rank == 0 and problem and os.path.exists(temporary):
        os.remove(temporary)
    _agreed(lattice.comm, problem)
    return final


def load(path, lattice, spec):
    """Read and verify the checkpoint at ``path``: (field on this rank, attribute dict).

    Collective over ``lattice``; the field must be the one FieldSpec ``spec`` describes
    (name, site shape). Raises CheckpointError (on every rank alike) naming the file and the
    fault. HDF5 detects a truncated file when opening it, so the collective read only starts on
    files whose structure is intact.
    """
    dataset = f"fields/{spec.name}"
    try:
        f = FieldFile(path, "r", lattice)
        problem = None
    except READ_ERRORS as e:
        f, problem = None, f"{path}: unreadable ({reason(e)})"
    _agreed(lattice.comm, problem)
    with f:
        header = _header(f.file, path, spec, lattice.shape) if lattice.rank == 0 else None
        header = lattice.comm.bcast(header, root=0)
        if isinstance(header, str):
            raise CheckpointError(header)
        attrs, stored, version = header
        field = f.read_field(dataset)
    if checksums.field_checksum(lattice, field, version) != stored:
        raise CheckpointError(f"{path}: field checksum mismatch (data corrupt)")
    return field, attrs


def _attributes_problem(attrs, path):
    """What is wrong with a checkpoint's attributes (not one, of a newer format, a state hash
    that does not hold), or None."""
    if attrs.get("format") != FORMAT:
        return f"{path}: not an lqcdflow checkpoint"
    if attrs.get("format_version", 0) > FORMAT_VERSION:
        return (f"{path}: written by a newer lqcdflow (format version "
                f"{attrs['format_version']}); update lqcdflow")
    if attrs.get("state_sha256") != _state_hash(attrs):
        return f"{path}: state hash mismatch (attributes corrupt)"
    return None


def _header(file, path, spec, shape):
    """(attributes, stored field checksum, its version) of an open checkpoint whose state hash
    verifies and that holds the field ``spec`` on a lattice of ``shape``; else what is wrong
    (a str)."""
    dataset = f"fields/{spec.name}"
    try:
        attrs = dict(file.attrs)
        problem = _attributes_problem(attrs, path)
        if problem:
            return problem
        if not checksums.attributes_intact(file):
            return f"{path}: attributes do not match their hash (attributes corrupt)"
        if dataset not in file:
            return (f"{path}: holds no field {spec.name!r} of this theory "
                    f"(fields: {', '.join(file['fields'])})")
        if file[dataset].shape != tuple(shape) + tuple(spec.site_shape):
            return (f"{path}: field {spec.name} has shape {file[dataset].shape}, "
                    f"expected {tuple(shape) + tuple(spec.site_shape)}")
        stored = file[dataset].attrs
        version = int(stored.get("checksum_version", 1))
        if version not in checksums.VERSIONS:
            return (f"{path}: field checksum of version {version}, written by a newer "
                    "lqcdflow; update lqcdflow")
        return attrs, int(stored["checksum"]), version
    except READ_ERRORS as e:
        return f"{path}: incomplete ({reason(e)})"


def verified_attributes(path):
    """The attributes of the checkpoint at ``path`` if it is one and its state hash holds,
    else None (serial; the field is not read)."""
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
    except READ_ERRORS:
        return None
    return None if _attributes_problem(attrs, path) else attrs


def verify(path):
    """The attributes of the checkpoint at ``path`` after verifying its state hash and field
    checksum, serially (no lattice, no MPI: for ``lqcdflow info``); CheckpointError names the
    fault."""
    try:
        with h5py.File(path, "r") as f:
            name = str(f.attrs.get("field", VERSION_1_FIELD))
            shape = tuple(int(n) for n in f.attrs["lattice.shape"])
            field = f.get(f"fields/{name}")
            field = field if isinstance(field, h5py.Dataset) else None
            spec = FieldSpec(name, () if field is None else field.shape[len(shape):])
            header = _header(f, path, spec, shape)
            if isinstance(header, str):
                raise CheckpointError(header)
            attrs, stored, version = header
            data = field[()]
    except CheckpointError:
        raise
    except READ_ERRORS as e:
        raise CheckpointError(f"{path}: unreadable ({reason(e)})") from None
    if checksums.global_checksum(data, version) != stored:
        raise CheckpointError(f"{path}: field checksum mismatch (data corrupt)")
    return attrs


def newest_trajectory(directory):
    """(trajectory, path) of the newest checkpoint whose attributes read, or (0, None).

    A quick look for job scripts (no field verification; a restart verifies), serial: each
    file is read in a child (lqcdflow.io.probe), and one that crashes it is passed over.
    """
    for path in list_checkpoints(directory):
        try:
            trajectory = probe.isolated(_trajectory_of, path)
        except probe.LibraryCrash:
            continue
        if trajectory is not None:
            return trajectory, path
    return 0, None


def _trajectory_of(path):
    """The trajectory of the checkpoint at ``path`` if its attributes read and are intact."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") == FORMAT and checksums.attributes_intact(f):
                return int(f.attrs["trajectory"])
    except READ_ERRORS:
        pass
    return None
