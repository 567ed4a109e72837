"""The HDF5 ensemble file: run metadata, the Monte Carlo history and observable series.

Layout (format "lqcdflow-ensemble", version 3; readable with plain h5py or h5dump):

    /                         attributes: format, format_version, code_version, created (UTC),
                              host, ranks, grid, volume, run_file (the TOML text) and every
                              run-file key as "section.key" (e.g. "theory.kappa"), the
                              theory's field ("field", "field.site_shape"), and
                              attributes_sha256, the hash of all attributes in the file
                              (lqcdflow.io.checksum.seal_attributes; files written before it
                              have none)
    /mc/trajectory   (C,)     int64, trajectory number 1, 2, ... (thermalisation included)
    /mc/<name>       (C,)     the sampler's record of each step (its ``record``): HMC, Langevin
                              and flow sampling (lqcdflow.mc.hmc.HMC_RECORD): accepted (int8,
                              the Metropolis decision) and delta_H (float64, H(end) -
                              H(start)); local updates
                              (lqcdflow.mc.local): acceptance (float64, the fraction of site
                              updates that changed the site) and delta_S (float64, the
                              change of the action over the sweep)
    /observables/trajectory (D,)  int64, trajectory after which each measurement was taken
    /observables/<name> (D, *shape)  every observable the theory declares, float64 or
                              complex128, with its ``description`` as attribute (phi^4:
                              action, m, abs_m, m2, m4, W, correlator (D, L_0); U(1):
                              action, plaquette, polyakov (D, D) complex, and in 2D
                              topological_charge)
    /committed/log   (E, 3 + S)  uint64, one row per commit: n and m, the committed lengths of
                              the /mc and /observables series; the checksum of the first n
                              (or m) rows of each of the S series, in the order of the
                              attribute ``series``; the checksum of the row's first 2 + S words
    /committed/head  (2, 3)   uint64, two slots (sequence number, log row, checksum of the two);
                              the valid slot with the larger sequence number names the last
                              commit. Row 0 of the log is the empty commit of the new file.

Only the first n rows of the /mc series and the first m rows of the /observables series are
records; the rest of the capacities C, D is zeros or rows of a commit that never completed.
The capacities are sized from ``sampler.n_trajectories`` and ``sampler.measure_every`` (at most
``INITIAL_BYTES`` per group at first), and at the end of every job the file is copied to exactly
its records (:meth:`EnsembleWriter.close`), so a file no job is writing has no spare rows (unless
its job was killed); readers that may meet one being written take n and m from
:func:`last_commit`.

The checksum of rows of a series is sum_j h(w_j XOR (j G)) mod 2^64 over their little-endian
words w_j (8 bytes; 1 byte for int8), with j the word's index in the whole series, h the
SplitMix64 finalizer (a bijection of 64-bit words) and G the 64-bit golden-ratio constant: the
mixing of lqcdflow.io.checksum (version 2). It is additive, so a commit extends it from the rows
it appends alone; a change of one word always changes it, any other change with probability
1 - 2^-64.

Only rank 0 touches the file. Records are buffered and committed every ``progress_every``
trajectories and at every checkpoint. The series and the log are contiguous datasets whose
storage is allocated and zero-filled when the file is created, so a commit writes raw bytes at
offsets HDF5 reported at creation: the new rows and the next log row, fsync, then the older
head slot (pointing at that log row), fsync. No HDF5 metadata (superblock, object headers,
attributes, heaps) is ever written after creation, so a process killed at any instant, or a
full disk, leaves the file as of the last commit or of the next one: the log row is on disk
before the head names it, and a torn head slot fails its checksum while the other slot still
names the previous commit. A file is created, and grown when a capacity runs out (doubled, or
sized for a larger ``n_trajectories`` when a run is continued), by writing a complete new file
next to it, fsyncing it and renaming it over the old one; growth verifies every checksum on
the way. Continuing from a checkpoint (``resume``) points the head at the log row of the
checkpoint's lengths: the records after it are made again, identically.

Versions 1 (phi^4 only) and 2 have the same series with exactly their lengths (chunked, no
spare rows) and a SHA-256 of each as attribute ``sha256``, and no /committed; every row is a
record. They are read as they are and converted into version 3 (one copy) when continued.
"""

import dataclasses
import datetime
import math
import os
import shutil
import socket

import h5py
import numpy as np
from h5py import h5d, h5p

import lqcdflow
from lqcdflow.io.checksum import array_sha256, attributes_intact, mix, seal_attributes
from lqcdflow.io.files import READ_ERRORS, reason, replaced_atomically
from lqcdflow.mc.hmc import HMC_RECORD

FORMAT = "lqcdflow-ensemble"
FORMAT_VERSION = 3
GROUPS = ("mc", "observables")
INITIAL_BYTES = 1 << 28  # preallocated per group at creation at most; beyond, doubling
DEFAULT_ROWS = 1024  # capacity when the attributes do not say how long the run is
TRAJECTORIES_PER_COMMIT = 16  # log rows: room for a commit every 16 records on average
MIN_LOG_ROWS = 64

_CHUNK_WORDS = 1 << 16  # words hashed at a time: the temporaries stay in cache
_COPY_BYTES = 1 << 26  # rows copied at a time when a file is rebuilt
_SLOT_BYTES = 3 * 8
_sync = getattr(os, "fdatasync", os.fsync)  # the data, not the mtime, must reach the disk


class OutputError(RuntimeError):
    """The output file cannot be created or written."""


class DamagedError(OutputError):
    """A commit record or a series checksum of an ensemble file does not hold."""


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


# --- checksums ------------------------------------------------------------------------------

def series_checksum(rows, first=0):
    """Checksum (a Python int in [0, 2^64)) of consecutive rows of a series, the first of
    them being row ``first`` of the series (see the module docstring).

    Guarantees: ``(series_checksum(a[:n]) + series_checksum(a[n:], n)) % 2**64 ==
    series_checksum(a)``; the value depends on the rows' values, dtype and positions only, not
    on the machine's byte order; a change of any one word changes it.
    """
    rows = np.asarray(rows)
    little = np.ascontiguousarray(rows, dtype=rows.dtype.newbyteorder("<"))
    width = math.gcd(little.dtype.itemsize, 8)
    words = little.reshape(-1).view(f"<u{width}")
    start = first * (little[0].nbytes // width if len(little) else 0)
    total = 0
    for offset in range(0, words.size, _CHUNK_WORDS):
        chunk = words[offset:offset + _CHUNK_WORDS].astype(np.uint64)
        index = np.arange(start + offset, start + offset + chunk.size, dtype=np.uint64)
        total += int(mix(chunk, index).sum(dtype=np.uint64))
    return total % 2**64


def _row_checks(rows):
    """The checksum of each row's leading words (all but its last), for a (k, w) uint64
    array of log rows or head slots (an array of k uint64)."""
    rows = np.asarray(rows, dtype=np.uint64)
    index = np.broadcast_to(np.arange(rows.shape[1] - 1, dtype=np.uint64), rows[:, :-1].shape)
    return mix(rows[:, :-1], index).sum(axis=1, dtype=np.uint64)  # wraps: mod 2^64


def _sealed(rows):
    """``rows`` (a (k, w) uint64 array whose last column is free) with that column set to
    the check of the others."""
    rows = np.array(rows, dtype=np.uint64)
    rows[:, -1] = _row_checks(rows)
    return rows


# --- reading --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Commit:
    """A commit of a version-3 ensemble file: what its log row and head slot say.

    ``lengths`` {"mc": n, "observables": m} are the committed records; ``checksums`` maps every
    series ("mc/trajectory", ...) to the checksum of those records, in the log's order.
    """

    sequence: int
    row: int
    lengths: dict
    checksums: dict


def _columns(f):
    return [s.decode() if isinstance(s, bytes) else str(s)
            for s in f["committed/log"].attrs["series"]]


def _commit(sequence, row, values, columns):
    return Commit(sequence, row, dict(zip(GROUPS, (int(v) for v in values[:2]))),
                  dict(zip(columns, (int(v) for v in values[2:-1]))))


def last_commit(f):
    """The last Commit of the open ensemble file ``f``, or None for versions 1 and 2 (no
    /committed: every row of every series is a record).

    Raises DamagedError if the file's attributes (the run's metadata) do not match their
    hash, if neither head slot holds its checksum or the log row the head names does not:
    every reader of an ensemble asks for its last commit first.
    """
    if not attributes_intact(f):
        raise DamagedError("attributes do not match their hash (attributes_sha256)")
    if "committed" not in f:
        return None
    slots = f["committed/head"][()]
    valid = [(int(s[0]), int(s[1])) for s, ok in zip(slots, _row_checks(slots) == slots[:, -1])
             if ok]
    if not valid:
        raise DamagedError("no valid commit record in /committed/head")
    sequence, row = max(valid)
    log = f["committed/log"]
    if row >= log.shape[0]:
        raise DamagedError(f"/committed/head names log row {row} of {log.shape[0]}")
    values = log[row:row + 1]
    if _row_checks(values)[0] != values[0, -1]:
        raise DamagedError(f"log row {row} of the last commit is damaged (/committed/log)")
    return _commit(sequence, row, values[0], _columns(f))


def commit_log(f, commit):
    """(rows, intact) of the log of a version-3 file up to its last ``commit``: the rows as a
    uint64 array (one commit each, oldest first) and whether each holds its checksum."""
    rows = f["committed/log"][:commit.row + 1]
    return rows, _row_checks(rows) == rows[:, -1]


def _series_names(f, commit):
    """The series of an ensemble file: the log's columns (version 3) or the datasets of its
    /mc and /observables groups."""
    if commit is not None:
        return list(commit.checksums)
    return [f"{group}/{name}" for group in GROUPS if group in f for name in f[group]]


def _lengths(f, commit):
    """The committed lengths {"mc": n, "observables": m} (versions 1 and 2: the lengths every
    series of the group has)."""
    if commit is not None:
        return dict(commit.lengths)
    return {group: min((f[group][name].shape[0] for name in f[group]), default=0)
            if group in f else 0 for group in GROUPS}


def _holds_records(path):
    """False only for an lqcdflow ensemble file that committed no record yet (a run that
    stopped before its first commit left it; replacing it loses nothing); True for anything
    else, including files that cannot be read."""
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") != FORMAT or any(_lengths(f, last_commit(f)).values())
    except READ_ERRORS:
        return True


# --- creating and rebuilding files ------------------------------------------------------------

def _series_specs(observables, record=HMC_RECORD):
    """[(name, little-endian dtype, row shape, description or None)] of the series written
    for a sampler's ``record`` and a theory's observables."""
    specs = [(f"mc/{name}", np.dtype(dtype), (), None)
             for name, dtype in (("trajectory", "<i8"), *record)]
    specs.append(("observables/trajectory", np.dtype("<i8"), (), None))
    specs += [(f"observables/{obs.name}", np.dtype(obs.dtype).newbyteorder("<"),
               tuple(obs.shape), obs.description) for obs in observables]
    return specs


def _planned_rows(attrs):
    """{"mc": n, "observables": m}: the records a run with metadata ``attrs`` makes, or None
    if the attributes do not say."""
    n = attrs.get("sampler.n_trajectories", "")
    if isinstance(n, str):
        return None
    every = attrs.get("sampler.measure_every", 1)
    return {"mc": int(n), "observables": int(n) // (1 if isinstance(every, str) else int(every))}


def _capacities(specs, planned, at_least):
    """Capacities for the ``planned`` rows (None: DEFAULT_ROWS), limited to INITIAL_BYTES per
    group but never below ``at_least`` rows (both dicts by group), and for the log: at least
    one row per TRAJECTORIES_PER_COMMIT records."""
    planned = planned or dict.fromkeys(GROUPS, DEFAULT_ROWS)
    capacities = {}
    for group in GROUPS:
        row = sum(d.itemsize * math.prod(s) for n, d, s, _ in specs if n.startswith(group + "/"))
        capacities[group] = max(1, at_least[group],
                                min(planned[group], INITIAL_BYTES // max(row, 1)))
    capacities["log"] = max(MIN_LOG_ROWS, capacities["mc"] // TRAJECTORIES_PER_COMMIT)
    return capacities


def _make_room(path, specs, capacities, doing):
    """OutputError ("cannot ``doing`` output file ...") unless the directory of ``path`` has
    room for a file of these series and capacities (plus 64 KiB of HDF5 metadata); OSError if
    it cannot be asked. HDF5 must not run into a full disk: its file close then fails, and
    freeing the half-closed file crashes the process (HDF5 1.10)."""
    nbytes = 2**16 + 8 * (3 + len(specs)) * capacities["log"] + sum(
        capacities[name.split("/")[0]] * dtype.itemsize * math.prod(shape)
        for name, dtype, shape, _ in specs)
    directory = os.path.dirname(os.path.abspath(path))
    free = shutil.disk_usage(directory).free
    if free < nbytes:
        raise OutputError(f"cannot {doing} output file {path}: {nbytes} bytes needed, {free} "
                          f"free on {directory}")


def _allocated(group, name, shape, dtype):
    """A contiguous dataset whose storage is allocated and zero-filled now: later writes of
    its values never change HDF5 metadata. No modification times: the headers never change."""
    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5d.FILL_TIME_ALLOC)
    return group.create_dataset(name, shape=shape, dtype=dtype, dcpl=dcpl, track_times=False)


def _write_layout(f, specs, capacities, log_rows):
    """Create the series and /committed of a version-3 file in the open new file ``f``, with
    the commit log ``log_rows`` (the head names its last row)."""
    for name, dtype, shape, description in specs:
        dataset = _allocated(f, name, (capacities[name.split("/")[0]],) + shape, dtype)
        if description is not None:
            dataset.attrs["description"] = description
    log = _allocated(f, "committed/log", (capacities["log"], 3 + len(specs)), np.uint64)
    log.attrs["series"] = [name for name, *_ in specs]
    log[:len(log_rows)] = _sealed(log_rows)
    head = _allocated(f, "committed/head", (2, 3), np.uint64)
    head[1] = _sealed([[1, len(log_rows) - 1, 0]])[0]  # sequence 1 lives in slot 1 % 2


def _chunks(start, stop, row_nbytes):
    """(a, b) bounds of consecutive row ranges of start..stop of about _COPY_BYTES each."""
    step = max(1, _COPY_BYTES // max(row_nbytes, 1))
    return ((a, min(a + step, stop)) for a in range(start, stop, step))


def _copy_verified(old, new, name, n, have, expected):
    """Copy the first ``n`` of the ``have`` records of series ``name`` from file ``old`` into
    ``new``; returns the checksum of the n copied rows. Raises DamagedError unless the
    checksum of all ``have`` rows is ``expected``: an int (version 3), or a SHA-256 attribute
    of versions 1 and 2 (a str; None: there is none)."""
    source = old[name]
    row_nbytes = source.dtype.itemsize * math.prod(source.shape[1:])
    prefix = 0
    for a, b in _chunks(0, n, row_nbytes):
        rows = source[a:b]
        new[name][a:b] = rows
        prefix += series_checksum(rows, a)
    if expected is None:
        ok = True
    elif isinstance(expected, str):
        ok = expected == array_sha256(source[()])
    else:
        rest = sum(series_checksum(source[a:b], a) for a, b in _chunks(n, have, row_nbytes))
        ok = (prefix + rest) % 2**64 == expected
    if not ok:
        raise DamagedError(f"checksum mismatch in {name}")
    return prefix % 2**64


def _rebuild(path, lengths, capacities, attrs=None):
    """Replace the ensemble file at ``path`` (any version) atomically by a version-3 file of
    its first ``lengths`` records with at least ``capacities`` rows.

    ``attrs`` (optional) are added to the file's attributes: the continuing run's ``field``
    and ``field.site_shape``, which files of versions 1 and 2 lack. Every series is verified on
    the way (DamagedError if one does not hold). The commit log
    keeps the commits up to ``lengths`` and ends in one of exactly ``lengths``. OutputError,
    before anything is written, if the disk has no room for the new file.
    """
    with h5py.File(path, "r") as old:
        commit = last_commit(old)
        have = _lengths(old, commit)
        names = _series_names(old, commit)
        specs = [(name, old[name].dtype.newbyteorder("<"), old[name].shape[1:],
                  old[name].attrs.get("description")) for name in names]
        if commit is None:
            log_rows = np.zeros((1, 3 + len(specs)), np.uint64)
        else:
            rows, intact = commit_log(old, commit)
            # a damaged row is dropped, not sealed again: its numbers are not to be trusted
            log_rows = rows[intact & (rows[:, 0] <= lengths["mc"])
                            & (rows[:, 1] <= lengths["observables"])]
        # room for the rows there are, the one of ``lengths`` and as many again
        capacities = {**capacities, "log": max(capacities["log"], 2 * (len(log_rows) + 1))}
        _make_room(path, specs, capacities, "copy")
        with replaced_atomically(path) as temporary:
            with h5py.File(temporary, "w") as new:
                new.attrs.update(old.attrs)
                new.attrs.update(attrs or {})
                new.attrs["format_version"] = FORMAT_VERSION
                _write_layout(new, specs, capacities, log_rows)
                checksums = []
                for name in names:
                    group = name.split("/")[0]
                    expected = (commit.checksums[name] if commit is not None
                                else old[name].attrs.get("sha256"))
                    total = have[group] if commit is not None else old[name].shape[0]
                    checksums.append(_copy_verified(old, new, name, lengths[group], total,
                                                    expected))
                last = [lengths["mc"], lengths["observables"]]
                if log_rows[-1, :2].tolist() != last:
                    new["committed/log"][len(log_rows)] = _sealed([last + checksums + [0]])[0]
                    new["committed/head"][1] = _sealed([[1, len(log_rows), 0]])[0]
                seal_attributes(new)


# --- appending ------------------------------------------------------------------------------

@dataclasses.dataclass
class _Storage:
    """Where a version-3 file keeps what commits write, and its last commit (rank 0)."""

    identity: tuple  # (st_dev, st_ino): the offsets belong to this file only
    series: dict  # {name: (byte offset, little-endian dtype, row shape, bytes per row)}
    capacities: dict  # {"mc": C, "observables": D, "log": E}
    log: tuple  # (byte offset, bytes per row)
    head: int  # byte offset
    commit: Commit


def _check_layout(f, names):
    """DamagedError unless every dataset ``names`` of the open file has exactly the storage
    its shape says, inside the file, and every series of a group the group's capacity: commits
    write raw bytes at these offsets, so a damaged shape must not send them past the end of a
    dataset into another one."""
    size = os.fstat(f.id.get_vfd_handle()).st_size
    for name in names:
        dataset = f[name]
        offset, nbytes = dataset.id.get_offset(), dataset.id.get_storage_size()
        capacity = f[f"{name.split('/')[0]}/trajectory"].shape[0] \
            if name.split("/")[0] in GROUPS else dataset.shape[0]
        if (nbytes != dataset.size * dataset.dtype.itemsize or offset + nbytes > size
                or dataset.shape[0] != capacity):
            raise DamagedError(f"the layout of /{name} does not match its storage")


def _storage(path):
    """The _Storage of the version-3 file at ``path`` as this package made it (contiguous
    series whose storage is allocated); DamagedError if its layout is not (_check_layout)."""
    with h5py.File(path, "r") as f:
        commit = last_commit(f)
        _check_layout(f, list(commit.checksums) + ["committed/log", "committed/head"])
        series = {name: (f[name].id.get_offset(), f[name].dtype.newbyteorder("<"),
                         f[name].shape[1:], f[name].dtype.itemsize * math.prod(f[name].shape[1:]))
                  for name in commit.checksums}
        capacities = {group: f[f"{group}/trajectory"].shape[0] for group in GROUPS}
        log = f["committed/log"]
        capacities["log"] = log.shape[0]
        storage = _Storage(None, series, capacities,
                           (log.id.get_offset(), log.dtype.itemsize * log.shape[1]),
                           f["committed/head"].id.get_offset(), commit)
        status = os.fstat(f.id.get_vfd_handle())
    storage.identity = (status.st_dev, status.st_ino)
    return storage


def _pwrite(fd, data, offset):
    """Write all of ``data`` at ``offset`` (a write may be short)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _open_for_commit(path, storage):
    """A read-write descriptor of ``path``; OutputError if it is no longer the file whose
    offsets ``storage`` holds (writing there would damage another file)."""
    fd = os.open(path, os.O_RDWR)
    status = os.fstat(fd)
    if (status.st_dev, status.st_ino) != storage.identity:
        os.close(fd)
        raise OutputError(f"output file {path} was replaced by another program during the run")
    return fd


def _point_head(fd, storage, row, values):
    """Make log row ``row`` (its ``values``) the last commit: write the older head slot,
    fsync."""
    sequence = storage.commit.sequence + 1
    slot = _sealed([[sequence, row, 0]])
    _pwrite(fd, slot.tobytes(), storage.head + (sequence % 2) * _SLOT_BYTES)
    _sync(fd)
    storage.commit = _commit(sequence, row, values, list(storage.series))


class EnsembleWriter:
    """Appends trajectory and measurement records to an ensemble file (rank 0 does the I/O).

    A commit writes only the new records, a log row and a head slot, into storage allocated
    when the file was made (see the module docstring): its cost is that of what it appends,
    and the file on disk always holds a complete commit, whenever the process dies. Creation,
    resumption and commits are collective so that an error stops every rank alike.

    Parameters
    ----------
    path : str
    attrs : dict
        Metadata attributes (see :func:`run_attributes`); used when the file is created.
        ``sampler.n_trajectories`` and ``sampler.measure_every`` size its capacity.
    observables : sequence of lqcdflow.theories.base.Observable
        What the theory measures: one series each.
    comm : mpi4py communicator
    overwrite : bool
        Replace an existing file when starting a new run; otherwise that is an error.
    resume : dict or None
        Committed series lengths ``{"mc": n, "observables": m}`` of a checkpoint to continue
        from: the existing file is truncated to them (records after the checkpoint are made
        again, identically). A file of format version 1 or 2 is converted to version 3.
    record : sequence of (name, dtype)
        The series of the sampler's record of each step, attributes of the ``info`` given to
        :meth:`record_trajectory` (default: HMC's, lqcdflow.mc.hmc.HMC_RECORD).
    """

    def __init__(self, path, attrs, observables, comm, overwrite=False, resume=None,
                 record=HMC_RECORD):
        self.path = path
        self.record = tuple(record)
        self.observables = tuple(obs.name for obs in observables)
        self.comm = comm
        self.active = comm.Get_rank() == 0
        self._trajectories = []
        self._measurements = []
        self._storage = None
        self.lengths = dict(resume) if resume else {"mc": 0, "observables": 0}
        error = None
        if self.active:
            specs = _series_specs(observables, self.record)
            planned = _planned_rows(attrs)
            if resume is None:
                error = self._create(attrs, specs, planned, overwrite)
            else:
                error = self._guarded(lambda: self._resume(dict(resume), specs, planned,
                                                           attrs))
        self._raise_if(error)

    def _raise_if(self, error):
        error = self.comm.bcast(error, root=0)
        if error:
            raise OutputError(error)

    def _guarded(self, action):
        """None if ``action()`` succeeds, else the message of its error."""
        try:
            action()
        except DamagedError as e:
            return f"output file {self.path} is damaged ({e}); lqcdflow info tells more"
        except OutputError as e:
            return str(e)
        except READ_ERRORS as e:
            return f"output file {self.path} is unreadable ({reason(e)})"
        return None

    def _create(self, attrs, specs, planned, overwrite):
        if os.path.exists(self.path) and not overwrite and _holds_records(self.path):
            return (f"output file {self.path} exists; set [output] overwrite = true or choose "
                    "another file")
        capacities = _capacities(specs, planned, dict.fromkeys(GROUPS, 0))
        try:
            _make_room(self.path, specs, capacities, "create")
            with replaced_atomically(self.path) as temporary:
                with h5py.File(temporary, "w") as f:
                    f.attrs.update(attrs)
                    _write_layout(f, specs, capacities, np.zeros((1, 3 + len(specs))))
                    seal_attributes(f)
            self._storage = _storage(self.path)
        except OutputError as e:
            return str(e)
        except OSError as e:
            return f"cannot create output file {self.path}: {reason(e)}"
        return None

    def _resume(self, lengths, specs, planned, attrs):
        if not os.path.exists(self.path):
            raise OutputError(f"output file {self.path} of the run to continue is missing")
        with h5py.File(self.path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise OutputError(f"{self.path} is not an lqcdflow ensemble file")
            commit = last_commit(f)
            names = _series_names(f, commit)
            wanted = [name for name, *_ in specs]
            missing = [name.split("/")[1] for name in wanted if name not in names]
            if missing:
                raise OutputError(f"output file {self.path} has no series "
                                  f"{', '.join(missing)} of this theory; it belongs to "
                                  "another run")
            extra = [name for name in names if name not in wanted]
            if extra:
                raise OutputError(f"output file {self.path} has series {', '.join(extra)} "
                                  "that this theory does not measure; it belongs to another "
                                  "run")
            have = _lengths(f, commit)
            if any(have[k] < lengths[k] for k in GROUPS):
                raise OutputError(f"output file {self.path} holds fewer records {have} than "
                                  f"the checkpoint says were written {lengths}")
            rows = None
            # a file whose layout changed since it was made (e.g. by h5repack) has no offsets
            appendable = commit is not None and all(
                f[name].id.get_offset() is not None
                for name in names + ["committed/log", "committed/head"])
            if appendable:
                log, intact = commit_log(f, commit)
                match = np.nonzero(intact & (log[:, 0] == lengths["mc"])
                                   & (log[:, 1] == lengths["observables"]))[0]
                rows = (int(match[-1]), log[match[-1]]) if match.size else None
        capacities = _capacities(specs, planned, lengths)
        if appendable:
            self._storage = _storage(self.path)
        if rows is None or planned and any(capacities[g] > self._storage.capacities[g]
                                           for g in GROUPS):
            # versions 1, 2 (which lack the field attributes: added), another layout, no
            # commit of these lengths (a damaged log row), or a longer run
            _rebuild(self.path, lengths, capacities,
                     {key: attrs[key] for key in ("field", "field.site_shape") if key in attrs})
            self._storage = _storage(self.path)
        elif rows[0] != self._storage.commit.row:
            fd = _open_for_commit(self.path, self._storage)
            try:
                _point_head(fd, self._storage, *rows)
            finally:
                os.close(fd)

    def record_trajectory(self, info):
        if self.active:
            self._trajectories.append((info.trajectory,
                                       *(getattr(info, name) for name, _ in self.record)))

    def record_measurement(self, trajectory, observables):
        if self.active:
            self._measurements.append((trajectory, observables))

    def _new_rows(self):
        """{series: rows} of the buffered records (series without new records left out)."""
        rows = {}
        if self._trajectories:
            for (name, _), column in zip((("trajectory", "<i8"), *self.record),
                                         zip(*self._trajectories)):
                rows[f"mc/{name}"] = column
        if self._measurements:
            rows["observables/trajectory"] = [t for t, _ in self._measurements]
            for name in self.observables:
                rows[f"observables/{name}"] = [obs[name] for _, obs in self._measurements]
        return rows

    def _append(self, new):
        """Append ``new`` {series: rows} as one commit (see the module docstring); returns the
        committed lengths."""
        storage = self._storage
        old = storage.commit
        added = {group: len(new.get(f"{group}/trajectory", ())) for group in GROUPS}
        lengths = {group: old.lengths[group] + added[group] for group in GROUPS}
        needed = {**lengths, "log": old.row + 2}
        if any(needed[key] > capacity for key, capacity in storage.capacities.items()):
            # out of room: a copy in which what ran out has doubled, amortised O(1) per record
            _rebuild(self.path, old.lengths,
                     {key: max(2 * capacity, needed[key]) if needed[key] > capacity else capacity
                      for key, capacity in storage.capacities.items()})
            storage = self._storage = _storage(self.path)
        fd = _open_for_commit(self.path, storage)
        try:
            checksums = []
            for name, (offset, dtype, shape, row_nbytes) in storage.series.items():
                group = name.split("/")[0]
                rows = np.ascontiguousarray(new.get(name, np.zeros((0,) + shape)), dtype=dtype)
                if rows.shape != (added[group],) + shape:  # would overwrite other rows
                    raise OutputError(f"{added[group]} records of {name} {shape} cannot be "
                                      f"{rows.shape}")
                _pwrite(fd, rows.tobytes(), offset + old.lengths[group] * row_nbytes)
                checksums.append((old.checksums[name] + series_checksum(
                    rows, old.lengths[group])) % 2**64)
            row = _sealed([[lengths["mc"], lengths["observables"], *checksums, 0]])
            log_offset, log_row_bytes = storage.log
            _pwrite(fd, row.tobytes(), log_offset + (old.row + 1) * log_row_bytes)
            _sync(fd)  # records and log row are on disk before the head names them
            _point_head(fd, storage, old.row + 1, row[0])
        finally:
            os.close(fd)
        return lengths

    def close(self):
        """Leave the file without spare rows (collective; after the last commit of a job).

        When a capacity is larger than the committed records (a run stopped before
        ``n_trajectories``), a copy of exactly the records replaces the file, so that a file no
        job is writing holds nothing but records, also for plain h5py readers that do not
        look at /committed. The next job grows it again. Returns None, or (the same on every
        rank) why the copy could not be made: the file then keeps its spare rows, which
        lqcdflow's readers skip.
        """
        error = None
        if self.active:
            storage = self._storage
            lengths = dict(storage.commit.lengths)
            if any(storage.capacities[group] > lengths[group] for group in GROUPS):
                error = self._guarded(lambda: _rebuild(self.path, lengths,
                                                       {**lengths, "log": 0}))
        return self.comm.bcast(error, root=0)

    def commit(self):
        """Append the buffered records to the file (collective).

        Guarantees: when it returns, the records are on disk and readers see them; if the
        process dies during it, the file holds the previous commit or this one, complete.
        Returns the committed series lengths (the same dict on every rank).
        """
        lengths, error = self.lengths, None
        if self.active and (self._trajectories or self._measurements):
            new = self._new_rows()
            self._trajectories.clear()
            self._measurements.clear()

            def append():
                nonlocal lengths
                lengths = self._append(new)
            error = self._guarded(append)
        self._raise_if(error)
        self.lengths = self.comm.bcast(lengths, root=0)
        return self.lengths
