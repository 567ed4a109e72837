"""Benchmark of one training step of the model-parallel flow: memory and time per rank.

Usage
-----
::

    mpiexec -n R python tools/bench_flow.py --shape 256 256 [--batch 16] [--layers 16]
        [--hidden 8 8] [--kernel 3] [--dtype float32] [--steps 5] [--warmup 1] [--threads 1]
        [--grid 2 1] [--weak] [--peer] [--json FILE] [--coupling affine] [--bins 8] ...

The flow ``FlowSpec(...).build`` is built on the lattice ``--shape`` split over the ranks of
``MPI.COMM_WORLD`` (process grid ``--grid``, by default the one with the smallest halo) and
trained with :func:`lqcdflow.flows.train.train_step` (reverse KL, Adam) on the phi^4 action
with ``--m2``, ``--lam``. With ``--weak``, ``--shape`` is the LOCAL lattice of every rank and
the global lattice is ``shape * grid`` (weak scaling: the local volume stays fixed). Options of
the architecture that :class:`~lqcdflow.flows.FlowSpec` has beyond shape, layers, hidden and
kernel (``--coupling``, ``--bins``, ``--bound``, ``--z2`` ...) are taken from its fields.

What is measured
----------------
``--warmup`` steps (default 1: they allocate the Adam state and warm the allocator), then
``--steps`` timed steps, each after an MPI barrier.

- Time: wall time of a step, the slowest rank's; median, min and max over the steps.
- Communication: time spent inside the lattice's halo exchange (``Lattice._start_exchange``
  and ``_finish``: faces posted, nonblocking send/receive and wait, host staging included),
  the reproducible sums (``reproducible_sum``: log-densities, actions, with their digit
  splitting) and the gradient all-reduce (``allreduce_gradients``), summed per step, as a
  fraction of the step (the slowest rank's fraction). It includes the time a rank waits for
  a slower neighbour, so it also measures load imbalance and, with more ranks than cores,
  the time a neighbour waits to be scheduled. The functions are wrapped by timers in this
  process only.
- Peer (``--peer``): every rank also trains the same architecture on its local lattice alone
  (``Lattice(local_shape, comm=MPI.COMM_SELF)``: the same work, no communication), all ranks at
  once, step by step alternating with the decomposed steps, so both see the same load on the
  machine. decomposed / peer is the cost of the decomposition, also when ranks outnumber cores.
  The peer's flow stays in memory: measure memory without ``--peer``.
- Peak memory of a step: before each step this rank's peak resident set size is reset (writing
  ``5`` to ``/proc/self/clear_refs`` resets ``VmHWM`` to the current ``VmRSS``); after the step
  the peak is ``VmHWM``. The memory of training is ``max over timed steps of VmHWM - VmRSS``
  with VmRSS read before the first step (the interpreter, torch, MPI and the flow): it counts
  the Adam state, the activations and transients of the step, MPI buffers touched during the
  step, and what the allocator keeps resident after freeing (it is resident, so a run needs
  it). Where ``clear_refs`` cannot be written the peak is ``ru_maxrss`` since the start of the
  process (marked in the output).
- Saved tensors: the bytes autograd keeps for the backward pass after the forward pass of the
  loss (one more forward after the timed steps, with ``torch.autograd.graph.saved_tensors_hooks``,
  each storage counted once): the activation memory of the model as built, without the
  transients of the forward and backward passes.
- Model: the activation memory estimate

      M_act = n_layers * C * B * V_loc * b,
      C = z * sum_convs [c_in prod_mu (l_mu + 2 w) / V_loc + c_out] + 2,

  with B the batch, V_loc the local volume, b the bytes per number, z = 2 with ``--z2`` (the
  conditioner sees the batch twice) else 1, and per convolution of kernel 2w + 1 its padded
  input (kept by the convolution) and output (kept by the activation function after it); the
  2 are the affine coupling's input x and exp(s), kept by the product x exp(s). A spline
  coupling keeps more element-wise tensors than that; the saved-tensor count includes them.

Output
------
Rank 0 prints the configuration, one line for the run (the rank count) and one line per rank;
``--json FILE`` appends the figures of the run as one JSON line to FILE. The process grid,
global and local lattices are in both.
"""

import argparse
import dataclasses
import json
import math
import resource
import statistics
import sys
import time

import torch
from mpi4py import MPI

import lqcdflow.flows.torch_lattice as torch_lattice
import lqcdflow.flows.train as training
from lqcdflow.flows import FlowSpec, PeriodicConv, constant_lr, train_step
from lqcdflow.parallel import Lattice
from lqcdflow.parallel.comm import guarded
from lqcdflow.parallel.grid import GridError, halo_sites, valid_grids

DTYPES = {"float32": torch.float32, "float64": torch.float64}
# FlowSpec fields with options of their own here; any other field with a default becomes an
# option of its own name
OWN_FIELDS = ("shape", "n_layers", "hidden", "kernel_size", "m2", "lam", "seed")
MIB = 2**20


def architecture_fields():
    """FlowSpec's fields with defaults that this benchmark has no option of its own for."""
    return [f for f in dataclasses.fields(FlowSpec)
            if f.name not in OWN_FIELDS and f.default is not dataclasses.MISSING]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", type=int, nargs="+", default=[256, 256],
                   help="global lattice extents; with --weak the local ones (default 256 256)")
    p.add_argument("--grid", type=int, nargs="+", default=None,
                   help="process grid (default: smallest halo)")
    p.add_argument("--weak", action="store_true",
                   help="--shape is every rank's local lattice, the global one is shape * grid")
    p.add_argument("--batch", type=int, default=16, help="samples per step (default 16)")
    p.add_argument("--layers", type=int, default=16, help="coupling layers (default 16)")
    p.add_argument("--hidden", type=int, nargs="+", default=[8, 8],
                   help="hidden channels of each conditioner (default 8 8)")
    p.add_argument("--kernel", type=int, default=3, help="convolution kernel size (default 3)")
    p.add_argument("--m2", type=float, default=-4.0, help="target m^2 (default -4)")
    p.add_argument("--lam", type=float, default=8.0, help="target lambda (default 8)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    p.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank (default 1)")
    p.add_argument("--peer", action="store_true",
                   help="also time the same flow on each rank's local lattice alone")
    p.add_argument("--json", metavar="FILE", help="append the figures as a JSON line to FILE")
    for f in architecture_fields():
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                           help=f"FlowSpec.{f.name} (default {f.default})")
        else:
            p.add_argument(flag, type=type(f.default), default=f.default,
                           help=f"FlowSpec.{f.name} (default {f.default})")
    args = p.parse_args(argv)
    positive = {"--batch": args.batch, "--layers": args.layers, "--steps": args.steps,
                "--threads": args.threads, "--kernel": args.kernel}
    bad = [name for name, value in positive.items() if value < 1]
    bad += ["--shape"] if min(args.shape) < 1 else []
    bad += ["--hidden"] if min(args.hidden) < 1 else []
    bad += ["--warmup"] if args.warmup < 0 else []
    if bad:
        p.error(f"{', '.join(bad)} must be positive (--warmup non-negative)")
    return args


def weak_grid(local, nranks):
    """The process grid with the smallest halo for a fixed local lattice ``local``."""
    grids = valid_grids([l * nranks for l in local], nranks)  # every factorization of nranks
    return min(grids, key=lambda g: (halo_sites([l * n for l, n in zip(local, g)], g),
                                     tuple(-n for n in g)))


def make_lattice(args, comm):
    if not args.weak:
        return Lattice(args.shape, comm=comm, grid=args.grid)
    grid = tuple(args.grid) if args.grid else weak_grid(args.shape, comm.Get_size())
    if len(grid) != len(args.shape):
        raise GridError(f"process grid {list(grid)} has {len(grid)} directions, the lattice "
                        f"{list(args.shape)} has {len(args.shape)}")
    return Lattice([l * n for l, n in zip(args.shape, grid)], comm=comm, grid=grid)


class CommTimer:
    """Seconds spent in the wrapped communication functions since the last ``reset``."""

    def __init__(self):
        self.seconds = 0.0

    def reset(self):
        self.seconds = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return timed


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak():
    """Reset VmHWM to VmRSS; False where /proc/self/clear_refs cannot be written."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_kib(resettable):
    """Peak resident set size (KiB) since the last reset, or since the start of the process."""
    return _status_kib("VmHWM") if resettable else resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss


def saved_tensor_bytes(flow, lattice, args):
    """Bytes of the distinct storages autograd saves in the forward pass of the loss."""
    seen = {}

    def pack(t):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        phi, logq = flow.sample(args.batch, 0)
        loss = (logq + flow_spec(args, lattice).target(lattice).action(phi)).mean()
    del loss, phi, logq
    return sum(seen.values())


def model_bytes(flow, lattice, args, itemsize):
    """M_act of the module docstring, and its channel count C."""
    local = lattice.local_shape
    volume = math.prod(local)
    z = 2 if getattr(args, "z2", False) else 1
    per_layer = []
    for layer in flow.layers:
        convs = [m for m in layer.modules() if isinstance(m, PeriodicConv)]
        per_layer.append(z * sum(
            c.conv.in_channels * math.prod(l + 2 * c.width for l in local) / volume
            + c.conv.out_channels for c in convs) + 2)
    channels = sum(per_layer) / len(per_layer)
    return sum(per_layer) * args.batch * volume * itemsize, channels


def flow_spec(args, lattice):
    arch = {f.name: getattr(args, f.name) for f in architecture_fields()}
    return FlowSpec(shape=tuple(lattice.shape), n_layers=args.layers, hidden=tuple(args.hidden),
                    kernel_size=args.kernel, m2=args.m2, lam=args.lam, seed=1, **arch)


def build(args, lattice):
    flow = flow_spec(args, lattice).build(lattice, init_seed=0, dtype=DTYPES[args.dtype])
    return flow, torch.optim.Adam(flow.parameters(), lr=1e-3)


def setup(args, comm):
    """{name: (lattice, flow, optimizer)}: the decomposed flow and, with --peer, the peer's.
    Raises ValueError (alike on every rank) for a bad lattice, grid or architecture."""
    lat = make_lattice(args, comm)
    trainees = {"decomposed": (lat, *build(args, lat))}
    if args.peer:
        alone = Lattice(lat.local_shape, comm=MPI.COMM_SELF)
        trainees["peer"] = (alone, *build(args, alone))
    return trainees


def measure(args, trainees, comm):
    """Time and memory of the training steps; returns the figures (a dict, on every rank)."""
    lat = trainees["decomposed"][0]
    timer = CommTimer()
    lat._start_exchange, lat._finish = timer.wrap(lat._start_exchange), timer.wrap(lat._finish)
    torch_lattice.reproducible_sum = timer.wrap(torch_lattice.reproducible_sum)
    training.allreduce_gradients = timer.wrap(training.allreduce_gradients)
    targets = {name: flow_spec(args, lattice).target(lattice)
               for name, (lattice, _, _) in trainees.items()}
    resettable = reset_peak()
    baseline = _status_kib("VmRSS")  # before any step: interpreter, torch, the flow(s)
    lr = constant_lr(1e-3)
    times = {name: [] for name in trainees}
    comm_times, peaks = [], []
    for step in range(args.warmup + args.steps):
        for name, (lattice, flow, opt) in trainees.items():
            reset_peak()
            comm.Barrier()
            timer.reset()
            start = time.perf_counter()
            train_step(flow, opt, targets[name], args.batch, step, lr)
            seconds = time.perf_counter() - start
            if step < args.warmup:
                continue
            times[name].append(seconds)
            if name == "decomposed":
                comm_times.append(timer.seconds)
                peaks.append(peak_kib(resettable))
    comm.Barrier()
    lattice, flow, _ = trainees["decomposed"]
    itemsize = torch.finfo(DTYPES[args.dtype]).bits // 8
    saved = saved_tensor_bytes(flow, lattice, args)
    model, channels = model_bytes(flow, lattice, args, itemsize)

    # per step, the slowest rank's time; its communication fraction is that rank's
    slowest = {name: [comm.allreduce(t, op=MPI.MAX) for t in ts] for name, ts in times.items()}
    fraction = statistics.median([c / t for c, t in zip(comm_times, times["decomposed"])])
    mine = {
        "rank": lat.rank, "coords": list(lat.coords), "offset": list(lat.offset),
        "rss_before_mib": baseline / 1024, "step_peak_mib": (max(peaks) - baseline) / 1024,
        "peak_hwm_mib": max(peaks) / 1024, "comm_fraction": fraction,
    }
    ranks = comm.allgather(mine)
    arch = {f.name: getattr(args, f.name) for f in architecture_fields()}
    result = {
        "ranks": lat.size, "grid": list(lat.grid), "shape": list(lat.shape),
        "local_shape": list(lat.local_shape), "local_volume": lat.local_volume,
        "weak": args.weak, "batch": args.batch, "layers": args.layers,
        "hidden": list(args.hidden), "kernel": args.kernel, "dtype": args.dtype,
        "architecture": arch, "threads": args.threads, "warmup": args.warmup,
        "steps": args.steps, "step_s": slowest["decomposed"],
        "step_median_s": statistics.median(slowest["decomposed"]),
        "comm_fraction_max_rank": max(p["comm_fraction"] for p in ranks),
        "saved_tensors_mib": saved / MIB, "model_mib": model / MIB, "model_channels": channels,
        "peak_reset": resettable, "per_rank": ranks,
    }
    if args.peer:
        result["peer_step_s"] = slowest["peer"]
        result["peer_step_median_s"] = statistics.median(slowest["peer"])
        result["ratio_to_peer"] = result["step_median_s"] / result["peer_step_median_s"]
    return result


def format_result(r):
    """The figures of :func:`measure` as text: configuration, the run's line, one per rank."""
    dims = (lambda v: "x".join(map(str, v)))
    ms = [t * 1e3 for t in r["step_s"]]
    arch = ", ".join(f"{k}={v}" for k, v in r["architecture"].items())
    peak = "" if r["peak_reset"] else " (peaks since process start: clear_refs not writable)"
    step = f"{statistics.median(ms):.1f} [{min(ms):.1f}-{max(ms):.1f}]"
    peer = (f"{r['peer_step_median_s'] * 1e3:>8.1f} {r['ratio_to_peer']:>5.2f}"
            if "ratio_to_peer" in r else f"{'-':>8} {'-':>5}")
    worst = max(p["step_peak_mib"] for p in r["per_rank"])
    lines = [
        f"flow training step: {r['layers']} layers, hidden {dims(r['hidden'])}, kernel "
        f"{r['kernel']}, {arch}; {r['dtype']}, batch {r['batch']}, {r['threads']} thread(s) "
        f"per rank; {r['steps']} timed steps after {r['warmup']}{peak}",
        f"memory model: {r['model_channels']:.4g} fields per site, layer and sample",
        "",
        f"{'ranks':>5} {'grid':>7} {'global':>11} {'local':>11} {'step ms med [min-max]':>26} "
        f"{'comm':>5} {'peer ms':>8} {'ratio':>5} {'step MiB':>9} {'saved':>8} {'model':>8}",
        f"{r['ranks']:>5} {dims(r['grid']):>7} {dims(r['shape']):>11} "
        f"{dims(r['local_shape']):>11} {step:>26} {100 * r['comm_fraction_max_rank']:>4.0f}% "
        f"{peer} {worst:>9.1f} {r['saved_tensors_mib']:>8.1f} {r['model_mib']:>8.1f}",
        "",
        f"{'rank':>5} {'coords':>7} {'RSS before':>11} {'step peak':>10} {'VmHWM':>8} "
        f"{'comm':>5}   (MiB)",
    ]
    for p in r["per_rank"]:
        lines.append(f"{p['rank']:>5} {dims(p['coords']):>7} {p['rss_before_mib']:>11.1f} "
                     f"{p['step_peak_mib']:>10.1f} {p['peak_hwm_mib']:>8.1f} "
                     f"{100 * p['comm_fraction']:>4.0f}%")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    comm = MPI.COMM_WORLD
    torch.set_num_threads(args.threads)
    trainees = {}
    code = guarded(lambda: trainees.update(setup(args, comm)), comm, (ValueError,))
    if code:
        return code
    result = guarded(lambda: measure(args, trainees, comm), comm)
    if comm.Get_rank() == 0:
        print(format_result(result), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
