"""Ensemble-file benchmark: the cost of a commit against the records already in the file.

Usage::

    python tools/bench_ensemble.py [--dir DIR] [--max 1000000] [--commit 100] [--repeat 20]

A phi^4-like chain (16 x 16 lattice: action, m, abs_m, m2, m4, W and a 16-entry correlator,
measured every trajectory) is written with :class:`lqcdflow.io.ensemble.EnsembleWriter`. With
10^3, 10^4, ... up to --max records in the file it times --repeat commits of --commit records
each (the ``commit()`` call only: data and log row written, fsync, head slot, fsync) and prints
the median and the slowest. Commits that had to grow the file (copy into one with doubled
capacity) are listed apart: the file is made without a size hint (no
``sampler.n_trajectories``), so it starts with room for 1024 records and doubles. Between the
sizes the chain is filled with commits of 10^4 records. Last, the time to read the whole file
back as ``lqcdflow analyze`` does (checksums verified) and to verify it as ``lqcdflow info``
does. About a minute for 10^6 records.
"""

import argparse
import math
import os
import tempfile
import time

import numpy as np
from mpi4py import MPI

from lqcdflow.analysis import read
from lqcdflow.io import info
from lqcdflow.io.ensemble import FORMAT, FORMAT_VERSION, EnsembleWriter
from lqcdflow.mc.hmc import TrajectoryInfo
from lqcdflow.parallel import Lattice
from lqcdflow.theories.phi4 import Phi4, Phi4Couplings

SHAPE = (16, 16)
FILL = 10**4  # records per commit between the measured sizes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary "
                        "directory, removed afterwards)")
    parser.add_argument("--max", type=int, default=10**6, help="records at the largest size")
    parser.add_argument("--commit", type=int, default=100, help="records per timed commit")
    parser.add_argument("--repeat", type=int, default=20, help="timed commits per size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        run(os.path.join(directory, "bench.h5"), args)


def run(path, args):
    observables = Phi4(Lattice(SHAPE, comm=MPI.COMM_SELF),
                       Phi4Couplings.hopping(0.2, 0.0)).observables
    attrs = {"format": FORMAT, "format_version": FORMAT_VERSION,
             "lattice.shape": np.asarray(SHAPE), "theory.name": "phi4",
             "theory.form": "hopping", "theory.kappa": 0.2, "theory.lambda": 0.0,
             "run.seed": 1}
    writer = EnsembleWriter(path, attrs, observables, MPI.COMM_SELF, overwrite=True)
    rng = np.random.default_rng(1)
    measured = {obs.name: rng.standard_normal(obs.shape) for obs in observables}
    done, growth = 0, []

    def commit(k):
        """Commit k more records; its seconds, or None if it grew the file."""
        nonlocal done
        for t in range(done + 1, done + k + 1):
            writer.record_trajectory(TrajectoryInfo(t, 0.01, t % 4 != 0))
            writer.record_measurement(t, measured)
        inode = os.stat(path).st_ino
        start = time.perf_counter()
        writer.commit()
        seconds = time.perf_counter() - start
        done += k
        if os.stat(path).st_ino != inode:
            growth.append((done - k, seconds, os.path.getsize(path)))
            return None
        return seconds

    print(f"{os.path.dirname(path)}: commits of {args.commit} records (trajectory + "
          f"measurement), {args.repeat} per size")
    print(f"{'records in file':>16s} {'median ms':>10s} {'max ms':>8s}")
    for size in [10**k for k in range(3, int(math.log10(args.max)) + 1)]:
        while done < size:
            commit(min(FILL, size - done))
        times = [s for s in (commit(args.commit) for _ in range(args.repeat)) if s is not None]
        print(f"{size:>16d} {1e3 * np.median(times):>10.2f} {1e3 * max(times):>8.2f}")
    print("commits that grew the file (copy with doubled capacity):")
    for records, seconds, nbytes in growth:
        print(f"  at {records:>8d} records: {1e3 * seconds:8.1f} ms, file now "
              f"{nbytes / 2**20:.1f} MiB")
    start = time.perf_counter()
    read.read_segment(path)
    print(f"read {done} records (lqcdflow analyze's reader, checksums verified): "
          f"{time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    _, bad = info.inspect(path)
    assert not bad
    print(f"verify (lqcdflow info): {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
