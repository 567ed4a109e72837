"""Peak memory of an HMC trajectory per rank, in bytes per site of the local lattice.

Usage
-----
::

    mpiexec -n R python tools/memory_md.py --shape 8 8 8 8 [--theory su3|su2|u1|phi4]
        [--n-steps 4] [--integrator omelyan2] [--kernels numpy|compiled] [--json]

Every rank allocates the start field and one trajectory's momenta, then runs one HMC
trajectory (momenta, molecular dynamics, Metropolis, the theory's normalisation) under
``tracemalloc``, which sees NumPy's array allocations: the peak above what existed before the
trajectory is what the trajectory needs on top of the chain's field. The compiled kernels
(``--kernels compiled``) keep arrays of their own from their making on (SU(N): the padded
links' real and imaginary parts); those are reported too. Reported per rank (the largest over
ranks): the field and momenta bytes, the kernels' arrays, that peak, and all per local site;
``ru_maxrss`` (the process's resident peak, with the interpreter and libraries) besides.

The largest lattice one rank can run is then about (memory available) / (field + peak bytes
per site), since the peak grows linearly with the local volume (compare two shapes).
"""

import argparse
import json
import resource
import sys
import tracemalloc

from mpi4py import MPI

from bench_md import THEORIES
from lqcdflow.kernels.select import md_kernels
from lqcdflow.mc.hmc import HMC, ChainState, trajectory_peak
from lqcdflow.mc.integrators import SCHEMES
from lqcdflow.parallel import Lattice
from lqcdflow.rng import CounterRNG


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", type=int, nargs="+", default=[8, 8, 8, 8])
    p.add_argument("--grid", type=int, nargs="+", default=None)
    p.add_argument("--theory", choices=sorted(THEORIES), default="su3")
    p.add_argument("--integrator", choices=sorted(SCHEMES), default="omelyan2")
    p.add_argument("--n-steps", type=int, default=4)
    p.add_argument("--kernels", choices=["numpy", "compiled"], default="numpy")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def measure(args):
    comm = MPI.COMM_WORLD
    lattice = Lattice(args.shape, comm=comm, grid=args.grid)
    theory = THEORIES[args.theory](lattice)
    rng = CounterRNG(1)
    md_kernels(theory, args.kernels)  # imports numba and the kernels outside the count
    tracemalloc.start()
    kernels = md_kernels(theory, args.kernels)
    kernel_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    hmc = HMC.of(theory, SCHEMES[args.integrator](), args.n_steps, 1.0, rng, kernels)
    state = ChainState(theory.hot_start(rng))
    field_bytes = state.field.nbytes
    momentum_bytes = theory.momenta(rng, 1).nbytes
    peak = trajectory_peak(hmc, state)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    v = lattice.local_volume
    worst = comm.allreduce(peak, op=MPI.MAX)
    return {"theory": args.theory, "shape": list(lattice.shape), "ranks": lattice.size,
            "grid": list(lattice.grid), "local_volume": v, "field_bytes": field_bytes,
            "momentum_bytes": momentum_bytes, "kernels": args.kernels,
            "kernel_bytes": comm.allreduce(kernel_bytes, op=MPI.MAX),
            "trajectory_peak_bytes": worst,
            "field_bytes_per_site": field_bytes / v,
            "momentum_bytes_per_site": momentum_bytes / v,
            "kernel_bytes_per_site": comm.allreduce(kernel_bytes, op=MPI.MAX) / v,
            "trajectory_peak_bytes_per_site": worst / v,
            "max_rss_bytes": comm.allreduce(rss, op=MPI.MAX)}


def main(argv=None):
    args = parse_args(argv)
    r = measure(args)
    if MPI.COMM_WORLD.Get_rank() == 0:
        if args.json:
            print(json.dumps(r))
        else:
            print(f"{r['theory']} {'x'.join(map(str, r['shape']))} on {r['ranks']} rank(s) "
                  f"(grid {r['grid']}, V_loc = {r['local_volume']}): field "
                  f"{r['field_bytes_per_site']:.0f} B/site, momenta "
                  f"{r['momentum_bytes_per_site']:.0f} B/site, {r['kernels']} kernels' arrays "
                  f"{r['kernel_bytes_per_site']:.0f} B/site, trajectory peak "
                  f"{r['trajectory_peak_bytes_per_site']:.0f} B/site "
                  f"({r['trajectory_peak_bytes'] / 2**20:.1f} MiB); max RSS "
                  f"{r['max_rss_bytes'] / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
