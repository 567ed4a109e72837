"""Benchmark of one HMC molecular-dynamics step (phi^4, U(1), SU(2), SU(3)) against a copy of the
same size.

Usage
-----
::

    mpiexec -n R python tools/bench_md.py --shape 32 32 32 32 [--theory phi4|u1|su2|su3]
        [--integrator omelyan2] [--grid 2 1 1 1] [--dtype float64] [--backend numpy]
        [--kernels numpy compiled] [--no-c-reference]
        [--repeat 7] [--n-steps 10] [--min-time 0.2] [--json]

The lattice of global extents ``--shape`` is split over the ranks of ``MPI.COMM_WORLD``
(process grid ``--grid``, chosen by :func:`lqcdflow.parallel.grid.choose_grid` if omitted);
the theory is :class:`lqcdflow.theories.phi4.Phi4` in the hopping form with
kappa = 0.15, lambda = 0.02 on a Gaussian random field (``--theory phi4``, default), or
:class:`lqcdflow.theories.u1.U1` at beta = 1 on Haar-random links (``--theory u1``), or
:class:`lqcdflow.theories.sun.SUN` at beta = 6 on Haar-random links (``--theory su2|su3``),
with Gaussian momenta.

What is timed
-------------
These kernels, in turn within each of ``--repeat`` rounds so that all see the same machine
load:

- ``copy``: ``xp.copyto(dst, src)`` of two arrays of the local volume on every rank at once,
  the bandwidth peer;
- ``force``: one ``theory.force(field, out)`` (with its halo exchanges);
- ``MD step (K)``: a trajectory of n = ``--n-steps`` steps of size 1/n with the kernels K of
  ``--kernels`` (``numpy``: array operations; ``compiled``: the theory's compiled kernels,
  lqcdflow.kernels, where it has them), divided by n, so a step counts its share of the P
  updates merged at step boundaries (omelyan2: 2 + 1/n forces per step).

And, for phi^4 in float64 on one rank (unless ``--no-c-reference``), the C peer: the tool
compiles ``tools/md_reference.c`` with ``gcc -O3 -march=native`` (a neighbour table, the
force fused into the momentum update, omelyan2 with merged momentum updates, one thread) and
runs it on the same lattice, ``--repeat`` trajectories of ``--n-steps`` steps (best step),
between the rounds above.

After one warm-up call, each kernel is repeated k times per round, k chosen so that a round
lasts at least ``--min-time`` seconds; a round is bracketed by an MPI barrier and a device
synchronisation, and its time is the maximum over ranks divided by k. The table shows the
best round (noise only adds time) and the median; ``--json`` prints every figure instead.

Figures
-------
With V the global volume, R ranks, V_loc = V / R, f and m the bytes per site of the field and
of the momenta (phi^4: 8 and 8; U(1): 8 D and 8 D; SU(3): 144 D links as 3 x 3 complex and
64 D su(3) coordinates, in float64), H the halo sites sent per rank and force evaluation (sum
over split directions mu of 2 V_loc / l_mu), n_F and n_Q the force evaluations and Q updates in
the schedule of a trajectory of n steps:

- site updates per second = V / t_step;
- copy bandwidth = R * 2 f V_loc / t_copy (read + write) of the field. A store to a cache line not in
  cache first reads it (write-allocate), so a copy really moves 3 V_loc b while an in-place
  update ``a op= b`` moves what it is counted as; neither the copy nor the model below
  counts that read, and in-place kernels can therefore show somewhat more than 100 %;
- effective bandwidth = B_min / t, also as a percentage of the copy bandwidth.

Minimal bytes B_min (all ranks; what any implementation with a separate force kernel must
move, every array read or written once per kernel, stencil neighbours read once):

- force F = dS/dU: read U, write F, send and receive the halo   (f + m) V_loc + 2 f H
- P(c): pi <- pi - c F: read pi and F, write pi                              3 m V_loc
- Q(c): U <- Q(c pi) U: read U and pi, write U                         (2 f + m) V_loc

    B_min = R [n_F ((f + 4 m) V_loc + 2 f H) + n_Q (2 f + m) V_loc] / n     per MD step.

A force fused into the P update would need only 3 m V_loc per P; this is not assumed. (The
U(1) force needs, per split direction, only the faces of the D - 1 other link directions; the
model counts all D, a small overestimate of the minimum for D > 2.)

What limits the figures
-----------------------
The library builds each kernel from NumPy (or CuPy) array operations, which pass over
memory one at a time: in units of V_loc b (``c = a + b`` and ``a op= b`` 3, ``c = a * a``
and ``a op= scalar`` 2), the neighbour sum makes 3 (direction 0) + 6 (D - 1) (each other
direction: a pair formed, then added), the force polynomial 14 more, a P update 5 more and
a Q update 5, plus 4 H b for each force's halo: (6 D + 16) V_loc b per P update, against
the 5 of B_min. On CPUs these passes are made block by block, on slabs of time slices of
about 256 KiB (``Lattice.slabs``; the force evaluates its polynomial slab by slab inside the
neighbour sum) and in chunks of 32768 sites in the P and Q updates
(``kernels.blas.CHUNK_NUMBERS``), so that a block stays in the L2 cache from one pass to the
next: roughly B_min travels to and from L3 or memory, and the rest is L2 traffic. The time
is then set by the L2-resident passes and by the Python and NumPy dispatch of each
operation on each block (0.3 to 1 microsecond), and B_min / t stays well below the copy
bandwidth. On GPUs the block is the whole field and every pass goes to device memory.
Where a field fits in the last-level cache (32^4 in float64 is 8 MiB) the copy bandwidth is
a cache bandwidth; the copy peer has the same size, so the ratio stays fair. On small
lattices (64^2: 32 KiB) the dispatch is most of the time, and the percentage measures it.
"""

import argparse
import functools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mpi4py import MPI

from lqcdflow.backend import BackendError, make_backend
from lqcdflow.kernels.select import md_kernels, unavailable
from lqcdflow.mc.integrators import SCHEMES, levels_of
from lqcdflow.parallel import Lattice
from lqcdflow.parallel.grid import GridError, halo_sites
from lqcdflow.rng import CounterRNG
from lqcdflow.theories.phi4 import Phi4, Phi4Couplings
from lqcdflow.theories.sun import SUN
from lqcdflow.theories.u1 import U1

KAPPA, LAMBDA = 0.15, 0.02
BETA = 1.0
BETA_SUN = 6.0
SEED = 12345
THEORIES = {"phi4": lambda lat: Phi4(lat, Phi4Couplings.hopping(KAPPA, LAMBDA)),
            "u1": lambda lat: U1(lat, BETA),
            "su2": lambda lat: SUN(lat, 2, BETA_SUN), "su3": lambda lat: SUN(lat, 3, BETA_SUN)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", type=int, nargs="+", default=[32, 32, 32, 32],
                   help="global lattice extents (default 32 32 32 32)")
    p.add_argument("--grid", type=int, nargs="+", default=None,
                   help="process grid (default: smallest halo)")
    p.add_argument("--theory", choices=sorted(THEORIES), default="phi4")
    p.add_argument("--integrator", choices=sorted(SCHEMES), default="omelyan2")
    p.add_argument("--n-steps", type=int, default=10, help="MD steps per timed trajectory")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
    p.add_argument("--kernels", nargs="+", choices=["numpy", "compiled"],
                   default=["numpy", "compiled"],
                   help="MD kernels to time (default both; compiled where the theory has them)")
    p.add_argument("--no-c-reference", action="store_true",
                   help="do not build and time the C peer (tools/md_reference.c)")
    p.add_argument("--repeat", type=int, default=7, help="timed rounds (default 7)")
    p.add_argument("--min-time", type=float, default=0.2,
                   help="least seconds per kernel and round (default 0.2)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p.parse_args(argv)


def kernel_bytes(lat, f, m):
    """B_min of (force, P update with its force, Q update) on all ranks for ``f`` bytes of
    field and ``m`` of momenta per site, see the docstring."""
    v, h = lat.local_volume, halo_sites(lat.shape, lat.grid)
    return tuple(lat.size * b for b in ((f + m) * v + 2 * f * h, (f + 4 * m) * v + 2 * f * h,
                                        (2 * f + m) * v))


def step_bytes(kernels, scheme, n_steps):
    """Bytes of one MD step: those of a trajectory of ``n_steps`` steps divided by n_steps."""
    _, p_update, q_update = kernels
    schedule = scheme.schedule(n_steps)
    n_p = sum(u.kind == "P" for u in schedule)
    return (n_p * p_update + (len(schedule) - n_p) * q_update) / n_steps


def call_time(fn, number, comm, sync):
    """Seconds per call of ``fn`` over ``number`` calls, the slowest rank's."""
    comm.Barrier()
    start = time.perf_counter()
    for _ in range(number):
        fn()
    sync()
    return comm.allreduce((time.perf_counter() - start) / number, op=MPI.MAX)


def benchmark(kernels, repeat, min_time, comm, sync):
    """{name: list of seconds per call, one per round} for the callables in ``kernels``."""
    numbers = {}
    for name, fn in kernels.items():
        fn()  # warm-up
        numbers[name] = max(1, math.ceil(min_time / call_time(fn, 1, comm, sync)))
    times = {name: [] for name in kernels}
    for _ in range(repeat):
        for name, fn in kernels.items():
            times[name].append(call_time(fn, numbers[name], comm, sync))
    return times


def c_reference(args, lat):
    """Seconds per MD step of the C peer on ``lat``'s lattice (rank 0 builds and runs it; the
    other ranks wait), or None with the reason why it was not run."""
    if args.no_c_reference:
        return None, "not asked for"
    if args.theory != "phi4" or args.dtype != "float64" or lat.size != 1:
        return None, "the C peer runs phi^4 in float64 on one rank"
    source = Path(__file__).with_name("md_reference.c")
    with tempfile.TemporaryDirectory() as directory:
        binary = os.path.join(directory, "md_reference")
        built = subprocess.run(["gcc", "-O3", "-march=native", "-o", binary, str(source)],
                               capture_output=True, text=True)
        if built.returncode:
            return None, f"gcc failed: {built.stderr.strip()[:200]}"
        ran = subprocess.run([binary, str(args.n_steps), str(args.repeat), str(KAPPA),
                              str(LAMBDA), *map(str, lat.shape)], capture_output=True,
                             text=True, check=True)
    return float(ran.stdout.split()[0]), "gcc -O3 -march=native, 1 thread"


def run(args):
    """Build the lattice, theory and fields, time the kernels; returns the figures (a dict)."""
    comm = MPI.COMM_WORLD
    backend = make_backend(args.backend, args.dtype)
    lat = Lattice(args.shape, comm=comm, grid=args.grid, backend=backend)
    xp, dtype = lat.xp, backend.dtype
    theory = THEORIES[args.theory](lat)
    scheme = SCHEMES[args.integrator]()
    levels = levels_of(theory, scheme, args.n_steps)

    rng = CounterRNG(SEED)
    field = theory.hot_start(rng)
    pi = theory.momenta(rng, 1)
    work, dst = xp.empty_like(pi), xp.empty_like(field)

    paths = [k for k in args.kernels if k == "numpy" or not unavailable(theory)]
    kernels = {"copy": lambda: xp.copyto(dst, field),
               "force": lambda: theory.force(field, out=work)}
    for path in paths:
        kernels[f"trajectory {path}"] = functools.partial(md_kernels(theory, path).integrate,
                                                         field, pi, levels, 1.0)
    times = benchmark(kernels, args.repeat, args.min_time, comm, backend.synchronize)
    for path in paths:
        times[f"step {path}"] = [t / args.n_steps for t in times.pop(f"trajectory {path}")]
    reference, reference_note = c_reference(args, lat)

    site = (0,) * lat.ndim
    field_bytes, momentum_bytes = field[site].nbytes, pi[site].nbytes
    copy_bytes = lat.size * 2 * lat.local_volume * field_bytes
    b_min = kernel_bytes(lat, field_bytes, momentum_bytes)
    bytes_moved = {"copy": copy_bytes, "force": b_min[0],
                   **{f"step {path}": step_bytes(b_min, scheme, args.n_steps)
                      for path in paths}}

    result = {
        "theory": args.theory, "shape": list(lat.shape), "ranks": lat.size,
        "grid": list(lat.grid),
        "local_shape": list(lat.local_shape), "volume": lat.volume,
        "local_volume": lat.local_volume, "backend": backend.name, "dtype": str(dtype),
        "integrator": scheme.name, "n_steps": args.n_steps,
        "forces_per_step": scheme.force_evaluations(args.n_steps) / args.n_steps,
        "repeat": args.repeat, "kernels": paths,
        "threads_compiled": numba_threads() if "compiled" in paths else None,
    }
    copy_bw = copy_bytes / min(times["copy"])
    for name, nbytes in bytes_moved.items():
        best = min(times[name])
        result[name] = {
            "time_best_s": best, "time_median_s": statistics.median(times[name]),
            "times_s": times[name],
            "bytes_minimal": nbytes, "bandwidth_effective_Bps": nbytes / best,
            "effective_pct_of_copy": 100 * nbytes / best / copy_bw,
        }
    for path in paths:
        result[f"site_updates_per_s {path}"] = lat.volume / min(times[f"step {path}"])
    result["c_reference"] = {"time_step_s": reference, "note": reference_note}
    if reference:
        result["c_reference"]["site_updates_per_s"] = lat.volume / reference
    return result


def numba_threads():
    import numba

    return numba.get_num_threads()


def format_table(r):
    """The figures of :func:`run` as a small text table."""

    def dims(v):
        return "x".join(map(str, v))

    lines = [
        f"{r['theory']}, lattice {dims(r['shape'])} (V = {r['volume']}), {r['ranks']} rank(s), "
        f"grid {dims(r['grid'])}, local {dims(r['local_shape'])} "
        f"(V_loc = {r['local_volume']}), {r['backend']} {r['dtype']}",
        f"integrator {r['integrator']}, trajectory of {r['n_steps']} steps, "
        f"{r['forces_per_step']:.3g} forces/step; best (median) of {r['repeat']} rounds; "
        f"bandwidths summed over ranks",
        "site updates per second: " + ", ".join(
            f"{r[f'site_updates_per_s {path}']:.4g} ({path})" for path in r["kernels"]),
        "",
        f"{'kernel':<19} {'time best (median)':>23} {'B_min':>9} {'eff. BW':>10} "
        f"{'% copy':>7}",
    ]
    rows = [(f"step {path}", f"MD step ({path})") for path in r["kernels"]]
    for name, label in rows + [("force", "force (numpy)"), ("copy", "copy")]:
        k = r[name]
        lines.append(
            f"{label:<19} {k['time_best_s'] * 1e3:>9.4g} ms ({k['time_median_s'] * 1e3:>9.4g})"
            f" {k['bytes_minimal'] / 1e6:>7.4g}MB {k['bandwidth_effective_Bps'] / 1e9:>6.4g}GB/s"
            f" {k['effective_pct_of_copy']:>6.1f}%")
    c = r["c_reference"]
    if c["time_step_s"]:
        peer = c["site_updates_per_s"]
        ratios = ", ".join(f"{path} {r[f'site_updates_per_s {path}'] / peer:.2f}x"
                           for path in r["kernels"])
        lines.append(f"{'C peer':<19} {c['time_step_s'] * 1e3:>9.4g} ms ({c['note']}); "
                     f"speed relative to it: {ratios}")
    else:
        lines.append(f"C peer: not run ({c['note']})")
    if r["threads_compiled"]:
        lines.append(f"compiled kernels: {r['threads_compiled']} thread(s) per rank")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    rank = MPI.COMM_WORLD.Get_rank()
    try:
        result = run(args)
    except (BackendError, GridError) as e:  # raised alike on every rank
        if rank == 0:
            print(f"bench_md: error: {e}", file=sys.stderr)
        return 2
    if rank == 0:
        print(json.dumps(result, indent=1) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
