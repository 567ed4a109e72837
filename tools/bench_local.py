"""Benchmark of one checkerboard sweep of local updates (lqcdflow.mc.local), array path against
compiled kernels, with the copy bandwidth of the field measured in the same run.

Usage
-----
::

    mpiexec -n R python tools/bench_local.py --shape 512 512 [--theory phi4|ising]
        [--algorithm metropolis|heatbath] [--hits 2] [--dtype float64] [--repeat 5]

phi^4 in the hopping form at kappa = 0.18, lambda = 0.4, the Ising model at beta = 0.4, or
U(1) gauge theory at beta = 1.5 (Metropolis with proposal width 1.5, or heatbath where the
theory has it), on a hot start. Each path sweeps
``--repeat`` rounds of k sweeps, k chosen so that a round lasts 0.2 s; a round's time is the
maximum over ranks (barrier before). The array path is timed first: once compiled kernels
run, reproducible sums take their compiled digits (lqcdflow.parallel.reduce), which would
speed up the array path's sums too. Prints the best
and median time per sweep, ns per site, the ratio, and the copy of a field for scale.
"""

import argparse
import statistics
import time

import numpy as np
from mpi4py import MPI

from lqcdflow.backend import make_backend
from lqcdflow.mc.hmc import ChainState
from lqcdflow.mc.local import LocalSampler
from lqcdflow.parallel import Lattice
from lqcdflow.rng import CounterRNG
from lqcdflow.theories.ising import Ising
from lqcdflow.theories.phi4 import Phi4, Phi4Couplings
from lqcdflow.theories.u1 import U1

THEORIES = {"phi4": lambda lattice: Phi4(lattice, Phi4Couplings.hopping(0.18, 0.4)),
            "ising": lambda lattice: Ising(lattice, 0.4), "u1": lambda lattice: U1(lattice, 1.5)}


def rounds(function, comm, repeat, min_time=0.2):
    """Seconds per call of ``function`` in each of ``repeat`` rounds (max over ranks)."""
    function()
    calls, start = 1, time.perf_counter()
    while time.perf_counter() - start < min_time / 4:
        function()
        calls += 1
    per_round = max(1, int(calls * min_time * 4 / (time.perf_counter() - start) / 4))
    per_round = comm.allreduce(per_round, op=MPI.MAX)
    times = []
    for _ in range(repeat):
        comm.Barrier()
        start = time.perf_counter()
        for _ in range(per_round):
            function()
        times.append(comm.allreduce((time.perf_counter() - start) / per_round, op=MPI.MAX))
    return times


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", type=int, nargs="+", default=[512, 512])
    p.add_argument("--theory", choices=sorted(THEORIES), default="phi4")
    p.add_argument("--algorithm", choices=["metropolis", "heatbath"], default="metropolis")
    p.add_argument("--hits", type=int, default=2, help="Metropolis hits per site")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    comm = MPI.COMM_WORLD
    lattice = Lattice(tuple(args.shape), comm=comm, backend=make_backend("numpy", args.dtype))
    theory = THEORIES[args.theory](lattice)
    results = {}
    for kernels in ("numpy", "compiled"):  # numpy first: see the module docstring
        sampler = LocalSampler(theory, args.algorithm, 3, hits=args.hits, width=1.5,
                               kernels=kernels)
        state = [ChainState(theory.hot_start(CounterRNG(1)))]

        def sweep():
            state[0] = sampler.step(state[0])[0]

        results[sampler.kernels.name] = rounds(sweep, comm, args.repeat)
    field = theory.hot_start(CounterRNG(1))
    copy = np.empty_like(field)
    results["copy of the field"] = rounds(lambda: np.copyto(copy, field), comm, args.repeat)
    if comm.Get_rank() == 0:
        print(f"{args.theory} {args.algorithm} ({args.hits} hit(s) if Metropolis), lattice "
              f"{'x'.join(map(str, lattice.shape))}, {comm.Get_size()} rank(s), {args.dtype}; "
              f"best (median) of {args.repeat} rounds")
        base = min(results["numpy"])
        for name, times in results.items():
            best = min(times)
            print(f"{name:45s} {best * 1e3:9.3f} ms ({statistics.median(times) * 1e3:9.3f})"
                  f" {best / lattice.volume * comm.Get_size() * 1e9:7.1f} ns/site/rank"
                  f"  numpy/this {base / best:5.2f}")


if __name__ == "__main__":
    main()
