"""Ensemble files -> an Ensemble: replicas, continuation segments and consistency checks.

Each file is one segment of a Markov chain (layout in :mod:`lqcdflow.io.ensemble`). Files of
the same run are put together as follows:

* all files must describe the same ensemble: equal ``lattice.shape`` and ``theory.*``;
* segments are taken in order of their first trajectory; a segment continues a chain when it
  starts right after the chain's last trajectory, or later with the same ``run.seed`` (the
  counter-based random numbers make that the same chain); if several chains qualify, the
  one with the same seed, then the one given first, is continued;
* every other segment starts a new replica (an independent chain);
* two segments with the same seed and overlapping trajectories hold the same chain twice
  and are refused.

A file that is still being written is read without taking its lock (so the writer is never
blocked): format version 3 up to its last commit, the checksums of what is read verified;
versions 1 and 2 as far as every series is complete. A read that fails (caught the writer in
the middle of a flush, or a checksum that does not hold) is retried, then refused.
"""

import os
import time
from dataclasses import dataclass

import h5py
import numpy as np

from lqcdflow import theories
from lqcdflow.analysis import AnalysisError
from lqcdflow.analysis.series import Ensemble, Replica
from lqcdflow.io.ensemble import (FORMAT, FORMAT_VERSION, DamagedError, last_commit,
                                  series_checksum)
from lqcdflow.io import probe
from lqcdflow.io.files import READ_ERRORS, reason

MC = ("accepted", "delta_H", "acceptance", "delta_S")  # HMC and flows; local sweeps
READ_ATTEMPTS = 5
RETRY_SECONDS = 0.2


@dataclass(frozen=True)
class Segment:
    """What one file holds: a Replica (cut from the run file) plus the run's identity."""

    path: str
    replica: Replica
    shape: tuple
    theory: dict
    seed: object  # run.seed, or None if not recorded


def _python(value):
    """An attribute as a plain Python value (NumPy scalars and arrays converted)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value


def _complete(group, names, commit):
    """{name: data} of the records of the datasets ``names`` in the h5py group ``group``.

    ``commit`` is the file's last :class:`~lqcdflow.io.ensemble.Commit`: its rows of each
    series, whose checksums must hold (DamagedError naming the series otherwise); None (format
    versions 1 and 2): the rows every dataset holds.
    """
    if commit is None:
        n = min(group[name].shape[0] for name in names)
        return {name: group[name][:n] for name in names}
    key = group.name.strip("/")
    data = {name: group[name][:commit.lengths[key]] for name in names}
    for name, values in data.items():
        if series_checksum(values) != commit.checksums.get(f"{key}/{name}"):
            raise DamagedError(f"checksum mismatch in {key}/{name}; lqcdflow info tells more")
    return data


def _increasing(path, name, values):
    if np.any(np.diff(values) <= 0):
        raise AnalysisError(f"{path}: {name} numbers are not increasing; the file is damaged")


def _header(path, attrs):
    """(shape, theory, thermalisation cut and its source, seed) from the file's attributes."""
    if "format" in attrs and _python(attrs["format"]) != FORMAT:
        raise AnalysisError(f"{path}: not an lqcdflow ensemble "
                            f"(format {_python(attrs['format'])!r})")
    if _python(attrs.get("format_version", FORMAT_VERSION)) > FORMAT_VERSION:
        raise AnalysisError(f"{path}: written by a newer lqcdflow (format version "
                            f"{_python(attrs['format_version'])}); update lqcdflow")
    if "lattice.shape" not in attrs:
        raise AnalysisError(f"{path}: no attribute 'lattice.shape'; not an lqcdflow ensemble")
    shape = tuple(int(x) for x in np.atleast_1d(attrs["lattice.shape"]))
    theory = {key[len("theory."):]: _python(value) for key, value in attrs.items()
              if key.startswith("theory.") and _python(value) != ""}
    name = theory.get("name", theories.DEFAULT)
    if name not in theories.THEORIES:
        raise AnalysisError(f"{path}: theory {name!r} is unknown to this lqcdflow; update it")
    if "sampler.n_thermalization" in attrs:
        cut, source = int(attrs["sampler.n_thermalization"]), "run file"
    else:
        cut, source = 0, "none recorded"
    return shape, theory, cut, source, _python(attrs.get("run.seed"))


def _measurements(path, f, required, commit):
    """(trajectory, {observable: series}) of the complete measurements of every series the
    file holds (those its theory declared), as far as ``commit``; the series ``required``
    must be there."""
    missing = [f"/observables/{name}" for name in ("trajectory",) + required
               if f"observables/{name}" not in f]
    if missing:
        raise AnalysisError(f"{path}: no series {', '.join(missing)}; not an lqcdflow ensemble")
    names = ["trajectory"] + sorted(n for n in f["observables"] if n != "trajectory")
    observables = _complete(f["observables"], names, commit)
    trajectory = observables.pop("trajectory").astype(np.int64)
    if trajectory.size == 0:
        raise AnalysisError(f"{path}: no measurements yet")
    _increasing(path, "trajectory", trajectory)
    return trajectory, observables


def _record(path, f, commit):
    """(trajectory, {name: series} of the MC names recorded) of the complete Monte Carlo
    record, as far as ``commit``."""
    if "mc/trajectory" not in f:
        return np.zeros(0, np.int64), {}
    mc = _complete(f["mc"], ["trajectory"] + [n for n in MC if f"mc/{n}" in f], commit)
    trajectory = mc.pop("trajectory").astype(np.int64)
    _increasing(path, "mc/trajectory", trajectory)
    if "accepted" in mc:
        mc["accepted"] = mc["accepted"].astype(np.float64)
    return trajectory, mc


def _segment(path, f):
    shape, theory, cut, source, seed = _header(path, f.attrs)
    required = theories.module(theory.get("name", theories.DEFAULT)).REQUIRED
    commit = last_commit(f)  # once: both series as of the same commit
    replica = Replica("", (path,), *_measurements(path, f, required, commit),
                      *_record(path, f, commit), cut, source)
    return Segment(path, replica, shape, theory, seed)


def read_segment(path):
    """The Segment in file ``path``; AnalysisError if it is missing, not HDF5 or incomplete."""
    if not os.path.isfile(path):
        raise AnalysisError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise AnalysisError(f"{path}: not an HDF5 file")
    try:
        return probe.isolated(_read_segment, path)
    except probe.LibraryCrash as e:
        raise AnalysisError(f"{path}: cannot read it ({e})") from None


def _read_segment(path):
    """:func:`read_segment` in the process that reads (a child: lqcdflow.io.probe)."""
    for attempt in range(READ_ATTEMPTS):
        try:
            with h5py.File(path, "r", locking=False) as f:
                return _segment(path, f)
        except AnalysisError:
            raise
        # caught the writer in the middle of a flush or a resume, or damage (fails again)
        except READ_ERRORS as e:
            error = e
            time.sleep(RETRY_SECONDS * (attempt + 1))
    raise AnalysisError(f"{path}: cannot read it ({reason(error)})")


def _check_same_ensemble(segments):
    first = segments[0]
    for s in segments[1:]:
        if s.shape != first.shape:
            raise AnalysisError(f"{first.path} and {s.path} are different runs: lattice.shape "
                                f"{list(first.shape)} vs {list(s.shape)}")
        for key in sorted(set(first.theory) | set(s.theory)):
            a, b = first.theory.get(key), s.theory.get(key)
            if a != b:
                raise AnalysisError(f"{first.path} and {s.path} are different runs: theory.{key} "
                                    f"= {a} vs {b}; analyse them separately")


def _check_distinct(segments):
    seen = {}
    for s in segments:
        real = os.path.realpath(s.path)
        if real in seen:
            raise AnalysisError(f"{s.path} is given twice (also as {seen[real]})")
        seen[real] = s.path
    for i, a in enumerate(segments):
        for b in segments[i + 1:]:
            (a0, a1), (b0, b1) = a.replica.trajectories, b.replica.trajectories
            if a.seed is not None and a.seed == b.seed and a0 <= b1 and b0 <= a1:
                raise AnalysisError(
                    f"{a.path} and {b.path} hold the same chain (seed {a.seed}) on overlapping "
                    f"trajectories {max(a0, b0)}..{min(a1, b1)}; give each trajectory once")


def _continues(chain, segment):
    """Whether ``segment`` continues the chain of segments ``chain``."""
    last = chain[-1]
    end, start = last.replica.trajectories[1], segment.replica.trajectories[0]
    return start == end + 1 or (start > end and segment.seed is not None
                                and segment.seed == last.seed)


def _chains(segments):
    """Segments grouped into chains (lists in trajectory order), see the module docstring.

    The chains come in the order their first-given file was given.
    """
    chains = []
    for segment in sorted(segments, key=lambda s: s.replica.trajectories[0]):
        candidates = [c for c in chains if _continues(c, segment)]
        if candidates:
            min(candidates, key=lambda c: c[-1].seed != segment.seed).append(segment)
        else:
            chains.append([segment])
    return sorted(chains, key=lambda c: min(segments.index(s) for s in c))


def _join(name, chain, observables, mc):
    """One Replica from the segments of a chain, keeping the series ``observables``, ``mc``."""
    parts = [s.replica for s in chain]
    return Replica(
        name, tuple(s.path for s in chain),
        np.concatenate([p.trajectory for p in parts]),
        {k: np.concatenate([p.observables[k] for p in parts]) for k in observables},
        np.concatenate([p.mc_trajectory for p in parts]),
        {k: np.concatenate([p.mc[k] for p in parts]) for k in mc},
        parts[0].thermalization, parts[0].thermalization_source)


def load(paths):
    """The Ensemble in the files ``paths`` (see the module docstring).

    Series missing from any file are left out everywhere (the theory's analysis says what it
    cannot compute without them); the thermalisation cut of each
    replica is the run file's ``sampler.n_thermalization`` of its first segment.
    """
    segments = [read_segment(p) for p in paths]
    _check_distinct(segments)
    _check_same_ensemble(segments)
    observables = [n for n in segments[0].replica.observables
                   if all(n in s.replica.observables for s in segments)]
    mc = [n for n in MC if all(n in s.replica.mc for s in segments)]
    replicas = [_join(f"r{i}", chain, observables, mc)
                for i, chain in enumerate(_chains(segments))]
    return Ensemble(replicas, segments[0].shape, segments[0].theory)
