"""Checkpoint I/O benchmark: parallel HDF5 checkpoint write/read against raw file I/O.

Usage::

    mpiexec -n R python tools/bench_io.py --shape 128 128 128 64 --dir /tmp/bench_io

For a global field of V sites (8 V bytes in float64) it times, on all R ranks together:

- checkpoint write: ``lqcdflow.io.checkpoint.save`` (checksum, collective MPI-IO write of the
  global dataset, fsync, rename);
- checkpoint read: ``lqcdflow.io.checkpoint.load`` (collective read and checksum verification);
- raw write: every rank writes its block with ``numpy.ndarray.tofile`` into its own file and
  fsyncs it; raw read: ``numpy.fromfile`` of the same bytes.

Bandwidth = 8 V bytes / time (slowest rank, best of --repeat). The ratio checkpoint / raw is
what to compare: the raw path is the same bytes through the same file system in the same run.
Reads are served from the page cache in both paths alike unless ``--drop-caches`` (root)
empties it before every read, as for a checkpoint read back days later.
"""

import argparse
import os
import shutil
import time

import numpy as np
from mpi4py import MPI

from lqcdflow.config import validate
from lqcdflow.io import checkpoint
from lqcdflow.io.h5 import PARALLEL
from lqcdflow.mc.hmc import ChainState
from lqcdflow.parallel import Lattice


def timed(comm, work):
    comm.Barrier()
    start = time.perf_counter()
    work()
    comm.Barrier()
    return comm.allreduce(time.perf_counter() - start, op=MPI.MAX)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[128, 128, 128, 64])
    parser.add_argument("--dir", default="bench_io")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--drop-caches", action="store_true",
                        help="empty the page cache before reads (needs root)")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    lat = Lattice(args.shape, comm=comm)
    config = validate({"lattice": {"shape": args.shape}, "theory": {"kappa": 0.1, "lambda": 0.5},
                       "sampler": {"n_steps": 1, "n_trajectories": 1},
                       "output": {"file": "x.h5"}, "run": {"seed": 1}})
    phi = np.random.default_rng(lat.rank).standard_normal(lat.local_shape)
    nbytes = 8 * lat.volume
    directory = os.path.join(args.dir, f"ranks{lat.size}")
    raw = os.path.join(directory, f"raw_{lat.rank}.bin")
    if lat.rank == 0:
        os.makedirs(directory, exist_ok=True)
    comm.Barrier()

    def raw_write():
        with open(raw, "wb") as f:
            phi.tofile(f)
            f.flush()
            os.fsync(f.fileno())

    def drop_caches():
        if args.drop_caches and lat.rank == 0:
            os.sync()
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")

    def read_cold(work):
        drop_caches()
        return timed(comm, work)

    results = {"checkpoint write": [], "checkpoint read": [], "raw write": [], "raw read": []}
    path = checkpoint.checkpoint_path(directory, 1)
    for _ in range(args.repeat):
        results["raw write"].append(timed(comm, raw_write))
        results["raw read"].append(read_cold(lambda: np.fromfile(raw)))
        results["checkpoint write"].append(timed(comm, lambda: checkpoint.save(
            directory, lat, ChainState(phi, 1, 1), config, {}, keep=1)))
        results["checkpoint read"].append(read_cold(lambda: checkpoint.load(path, lat)))
    if lat.rank == 0:
        best = {k: min(v) for k, v in results.items()}
        print(f"lattice {args.shape}, {lat.size} rank(s), grid {list(lat.grid)}, "
              f"{nbytes / 2**30:.2f} GiB, MPI-IO: {PARALLEL}, cold reads: {args.drop_caches}")
        for kind in ("write", "read"):
            ck, rw = best[f"checkpoint {kind}"], best[f"raw {kind}"]
            print(f"{kind:>5s}: checkpoint {ck:7.3f} s {nbytes / ck / 1e9:6.2f} GB/s   "
                  f"raw {rw:7.3f} s {nbytes / rw / 1e9:6.2f} GB/s   ratio {rw / ck:6.1%}")
        shutil.rmtree(directory)


if __name__ == "__main__":
    main()
