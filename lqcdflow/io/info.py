"""``lqcdflow info FILE.h5``: what a file holds, and whether its checksums hold.

Knows the four lqcdflow formats: ensemble (format version 3: the committed records against the
checksums of the last commit and every commit record; versions 1 and 2: a SHA-256 per
dataset), checkpoint (state hash and field checksum), configurations (one field checksum per
configuration) and flow state (one SHA-256 of all it holds). Serial: no lattice, no MPI and
no torch are needed.
"""

import h5py
import numpy as np

from lqcdflow.io import checkpoint, configurations, ensemble, flow_states, probe
from lqcdflow.io.checksum import VERSIONS, array_sha256, attributes_intact, global_checksum
from lqcdflow.io.files import READ_ERRORS, reason


ATTRIBUTES_DAMAGED = "ATTRIBUTES DAMAGED: they do not match attributes_sha256"


class InfoError(RuntimeError):
    """The file cannot be inspected (missing, not HDF5, not an lqcdflow file)."""


def _attributes(f):
    lines = []
    for key, value in sorted(f.attrs.items()):
        if key == "run_file":
            continue
        text = np.asarray(value).tolist() if isinstance(value, np.ndarray) else value
        lines.append(f"  {key:<28s} {text}")
    return lines


def _ensemble(f):
    """(report lines, corrupt items) of an open ensemble file: its records and whether their
    checksums hold (format version 3: the committed records against the last commit's
    checksums, and every commit record; versions 1 and 2: each dataset's SHA-256 attribute)."""
    if not attributes_intact(f):
        return [ATTRIBUTES_DAMAGED], ["attributes"]
    try:
        commit = ensemble.last_commit(f)
    except ensemble.DamagedError as e:
        return [f"COMMIT RECORD DAMAGED: {e}"], ["committed/head"]
    lines, bad = [], []
    rows = {f"{group}/{name}": dataset[()] if commit is None
            else dataset[:commit.lengths[group]]
            for group in ensemble.GROUPS if group in f for name, dataset in f[group].items()}
    trajectories = rows.get("mc/trajectory", ())
    if len(trajectories):
        # HMC and flows record each trajectory's decision; local sweeps their fraction
        acceptance = rows.get("mc/accepted", rows.get("mc/acceptance"))
        lines.append(f"trajectories: {len(trajectories)} ({trajectories[0]}..{trajectories[-1]})"
                     + (f", acceptance {acceptance.mean():.4f}" if acceptance is not None
                        else ""))
    if commit is not None:
        _, intact = ensemble.commit_log(f, commit)
        lines.append(f"commits: {commit.row}, room for {f['mc/trajectory'].shape[0]} "
                     f"trajectories and {f['observables/trajectory'].shape[0]} measurements")
        if not intact.all():
            damaged = np.nonzero(~intact)[0].tolist()
            bad.append(f"committed/log rows {damaged}")
            lines.append(f"  COMMIT RECORDS DAMAGED: /committed/log rows {damaged}")
        missing = [name for name in commit.checksums if name not in rows]
        bad += missing
        lines += [f"  {name}: MISSING" for name in missing]
    lines.append("series:")
    for name, values in rows.items():
        if commit is None:
            ok, label = f[name].attrs.get("sha256") == array_sha256(values), "sha256"
        else:
            ok = ensemble.series_checksum(values) == commit.checksums.get(name)
            label = "checksum"
        bad += [] if ok else [name]
        lines.append(f"  {name:<26s} {str(values.shape):<14s} "
                     f"{label + ' ok' if ok else 'CHECKSUM MISMATCH'}")
    return lines, bad


def _checkpoint(path):
    try:
        attrs = checkpoint.verify(path)
    except checkpoint.CheckpointError as e:
        return [f"CHECKSUM MISMATCH: {e}"], [str(e)]
    return [f"trajectory {attrs['trajectory']}, accepted {attrs['accepted']}: state hash and "
            "field checksum ok"], []


def _configurations(f):
    if not attributes_intact(f):
        return [ATTRIBUTES_DAMAGED], ["attributes"]
    trajectories = f["configurations/trajectory"][()]
    stored = f["configurations/checksum"]
    version = int(stored.attrs.get("checksum_version", 1))
    if version not in VERSIONS:
        raise InfoError(f"{f.filename}: checksums of version {version}, written by a newer "
                        "lqcdflow; update lqcdflow")
    fields = f[f"configurations/{f.attrs.get('field', checkpoint.VERSION_1_FIELD)}"]
    lines, bad = [f"configurations: {len(trajectories)} of {fields.name}, each "
                  f"{list(fields.shape[1:])} {fields.dtype}"], []
    for i, (t, expected) in enumerate(zip(trajectories, stored[()])):
        if global_checksum(fields[i], version) != int(expected):
            bad.append(f"configuration {i} (trajectory {t})")
            lines.append(f"  configuration {i} (trajectory {t}): CHECKSUM MISMATCH")
    if not bad:
        lines.append("  all field checksums ok")
    return lines, bad


def _flow_state(f):
    line = f"flow state at training step {f.attrs.get('step')}"
    if flow_states.intact(f):
        return [f"{line}: checksum ok"], []
    return [f"{line}: CHECKSUM MISMATCH"], ["flow state"]


def inspect(path):
    """(report lines, list of corrupt items) for the lqcdflow file at ``path``, read in a
    child process (lqcdflow.io.probe): a file that crashes the HDF5 library is reported
    corrupt."""
    try:
        return probe.isolated(_inspect, path)
    except probe.LibraryCrash as e:
        return [f"{path}: DAMAGED: {e}"], [f"{path} (its HDF5 metadata)"]


def _inspect(path):
    try:
        with h5py.File(path, "r") as f:
            kind = f.attrs.get("format")
            header = [f"{path}: {kind} (format version {f.attrs.get('format_version')})"]
            header += _attributes(f)
            if kind == ensemble.FORMAT:
                lines, bad = _ensemble(f)
            elif kind == configurations.FORMAT:
                lines, bad = _configurations(f)
            elif kind == flow_states.FORMAT:
                lines, bad = _flow_state(f)
            elif kind != checkpoint.FORMAT:
                raise InfoError(f"{path} is not an lqcdflow file (format {kind!r})")
    except InfoError:
        raise
    except READ_ERRORS as e:
        raise InfoError(f"cannot read {path}: {reason(e)}") from None
    if kind == checkpoint.FORMAT:
        lines, bad = _checkpoint(path)
    return header + lines, bad
