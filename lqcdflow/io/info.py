"""``lqcdflow info FILE.h5``: what a file holds, and whether its checksums hold.

Knows the three lqcdflow formats: ensemble (series with SHA-256 per dataset), checkpoint
(state hash and field checksum) and configurations (one field checksum per configuration).
"""

import h5py
import numpy as np
from mpi4py import MPI

from lqcdflow.backend import make_backend
from lqcdflow.io import checkpoint, configurations, ensemble
from lqcdflow.io.checksum import array_sha256, field_checksum
from lqcdflow.parallel import Lattice
from lqcdflow.theories.base import FieldSpec


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


def _lattice(f):
    shape = tuple(int(n) for n in f.attrs["lattice.shape"])
    return Lattice(shape, comm=MPI.COMM_SELF,
                   backend=make_backend("numpy", str(f.attrs.get("run.dtype", "float64"))))


def _ensemble(f):
    lines, bad = [], []
    n = f["mc/trajectory"].shape[0]
    if n:
        trajectories = f["mc/trajectory"]
        lines.append(f"trajectories: {n} ({trajectories[0]}..{trajectories[-1]}), acceptance "
                     f"{f['mc/accepted'][()].mean():.4f}")
    lines.append("series:")
    for group in ("mc", "observables"):
        for name, dataset in f[group].items():
            ok = dataset.attrs.get("sha256") == array_sha256(dataset[()])
            bad += [] if ok else [f"{group}/{name}"]
            lines.append(f"  {group}/{name:<20s} {str(dataset.shape):<14s} "
                         f"{'sha256 ok' if ok else 'CHECKSUM MISMATCH'}")
    return lines, bad


def _checkpoint(path):
    lines, bad = [], []
    with h5py.File(path, "r") as f:
        lattice = _lattice(f)
        name = str(f.attrs.get("field", "phi"))  # format version 1: phi^4's phi
        site_shape = f[f"fields/{name}"].shape[lattice.ndim:]
    try:
        _, attrs = checkpoint.load(path, lattice, FieldSpec(name, site_shape))
        lines.append(f"trajectory {attrs['trajectory']}, accepted {attrs['accepted']}: "
                     "state hash and field checksum ok")
    except checkpoint.CheckpointError as e:
        bad.append(str(e))
        lines.append(f"CHECKSUM MISMATCH: {e}")
    return lines, bad


def _configurations(f):
    lattice = _lattice(f)
    trajectories = f["configurations/trajectory"][()]
    stored = f["configurations/checksum"][()]
    fields = f[f"configurations/{f.attrs.get('field', 'phi')}"]  # version 1: phi^4's phi
    lines, bad = [f"configurations: {len(trajectories)} of {fields.name}, each "
                  f"{list(fields.shape[1:])} {fields.dtype}"], []
    for i, (t, expected) in enumerate(zip(trajectories, stored)):
        if field_checksum(lattice, fields[i]) != int(expected):
            bad.append(f"configuration {i} (trajectory {t})")
            lines.append(f"  configuration {i} (trajectory {t}): CHECKSUM MISMATCH")
    if not bad:
        lines.append("  all field checksums ok")
    return lines, bad


def inspect(path):
    """(report lines, list of corrupt items) for the lqcdflow file at ``path``."""
    try:
        with h5py.File(path, "r") as f:
            kind = f.attrs.get("format")
            header = [f"{path}: {kind} (format version {f.attrs.get('format_version')})"]
            header += _attributes(f)
            if kind == ensemble.FORMAT:
                lines, bad = _ensemble(f)
            elif kind == configurations.FORMAT:
                lines, bad = _configurations(f)
            elif kind != checkpoint.FORMAT:
                raise InfoError(f"{path} is not an lqcdflow file (format {kind!r})")
    except (OSError, KeyError) as e:
        raise InfoError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    if kind == checkpoint.FORMAT:
        lines, bad = _checkpoint(path)
    return header + lines, bad
