"""Flow MCMC against HMC at matched cost, on the 2D phi^4 ensembles of Del Debbio et al.

Usage
-----
::

    python tools/flow_vs_hmc.py [--sizes 6 8 10 12 14] [--layers 16] [--hidden 8 8]
        [--kernel-size 3] [--batch 64] [--steps 2500] [--lr 1e-3] [--dtype float64]
        [--n-flow 16384] [--sample-batch 1024] [--integrator omelyan2]
        [--hmc-acceptance 0.7] [--hmc-tune 200] [--hmc-therm 200] [--clock wall]
        [--threads 1] [--seed 1] [--json out.json] [--series]
        [FlowSpec architecture options: --coupling, --bins, --bound, --z2, ...]

Ensembles
---------
L. Del Debbio, J. Marsh Rossney, M. Wilson, Phys. Rev. D 104 (2021) 094507,
arXiv:2105.12481: the standard-form action on an L x L periodic lattice,

    S[phi] = sum_x [ sum_mu (phi_{x+mu} - phi_x)^2 + m^2 phi_x^2 + lambda phi_x^4 ],

m^2 = -4 and (L, lambda) = (6, 6.975), (8, 6.008), (10, 5.550), (12, 5.276), (14, 5.113),
tuned there to keep the correlation length near L / 4.

What is done for each L
-----------------------
1. Train a flow (:class:`lqcdflow.flows.FlowSpec` built with the architecture options, every
   FlowSpec field that has a default becomes an option) by reverse KL with Adam for ``--steps``
   steps of ``--batch`` samples and the cosine schedule lr(n) = lr (1 + cos(pi n / steps)) / 2.
2. Run the independence-Metropolis flow MCMC (:func:`lqcdflow.flows.nmcmc`) for ``--n-flow``
   proposals (draw number ``--steps``, apart from the training draws 0 .. steps - 1), from a
   fresh chain: acceptance, longest run of rejections, ESS / N of the importance weights of all
   proposals, and m = M / V per configuration.
3. Run HMC (:class:`lqcdflow.mc.hmc.HMC`, trajectory length 1, cold start): tuning, the
   smallest n_steps = 1, 2, ... whose acceptance over ``--hmc-tune`` trajectories (continuing
   the chain) reaches ``--hmc-acceptance``; then ``--hmc-therm`` thermalisation trajectories;
   then measured trajectories (m = M / V after each) until the budget below is spent.
4. Gamma-method analysis (:mod:`lqcdflow.analysis.gamma`, pyerrors, S = 2) of both chains.

Matched cost
------------
Times are read from ``--clock``: ``wall`` (time.perf_counter, the default) or ``cpu``
(time.process_time of this process, less sensitive to other jobs on a shared machine); the
JSON holds both for every phase. With t_train, t_sample the flow's training and sampling
times and t_setup the HMC tuning and thermalisation time, HMC measures for

    t_run = max(t_sample, min(t_cap, t_train + t_sample - t_setup)),

so that (b) HMC's total time t_setup + t_run equals the flow's total t_train + t_sample
(unless the flow's total is shorter than t_setup + t_sample, or longer than the cap
``--hmc-max-seconds`` t_cap, which bounds the tool's own run time; then (b) is read from the
rates below), and the chain is analysed twice:

    (a) equal sampling time: the trajectories done within t_sample of the measured run,
        against the flow chain;
    (b) equal total time, training included: the whole measured run.

Because the exact matching moves with machine load, the comparison is also given as rates
that do not depend on it: with N samples, tau = max(tau_int(|m|), tau_int(m^2)),

    effective samples per second = N / (2 tau) / t,

for t = t_sample (flow) or t_run (HMC), and t = t_train + t_sample (flow) or
t_setup + t_run (HMC). tau_int counts proposals (flow) or trajectories (HMC).

Susceptibility
--------------
Del Debbio et al. (like Albergo et al., arXiv:1904.12072, eq. 25) take the two-point
susceptibility as the sum of the connected two-point function over all separations,

    G(x) = (1/V) sum_y [ <phi_y phi_{y+x}> - <phi_y><phi_{y+x}> ],
    chi_2 = sum_x G(x) = V ( <m^2> - <m>^2 ),   m = (1/V) sum_x phi_x,

with the ensemble mean <m> subtracted (zero by the Z2 symmetry on a finite lattice, so
chi_2 = V <m^2> in the exact answer). That is what is compared: chi_2 with its Gamma-method
error for each chain, and the deviation (chi_2^flow - chi_2^HMC) / sqrt(sigma_flow^2 +
sigma_HMC^2) against the whole HMC run (b). The subtraction of the sample <m>^2 makes
chi_2 sensitive to how evenly a chain visits both signs of m (a flow trained by reverse KL may
favour one), which is part of what the comparison tests; the JSON also holds <m> (a warning is
printed when it is more than 3 errors from 0) and V <m^2>, the estimator that uses <m> = 0.
V (<m^2> - <|m|>^2), which subtracts <|m|>^2 instead, is a different observable, not used.

Output
------
Two Markdown tables on stdout (samplers and physics; cost), progress on stderr, and with
``--json PATH`` every figure (with ``--series`` also the m series of both chains). A chi_2
(and a rate) marked * comes from a chain with N < 100 tau_int for one of its observables
(:data:`lqcdflow.analysis.results.RELIABLE_TAUS`): its error, tau_int and rate are then
unreliable (tau_int and the error typically underestimated).
Serial use is intended (1 rank); on more ranks every step is collective and the results
are the same, rank 0 prints.
"""

import argparse
import dataclasses
import json
import math
import platform
import sys
import time

import numpy as np
import torch
from mpi4py import MPI

from lqcdflow.analysis.gamma import MIN_SAMPLES, estimate, observable
from lqcdflow.analysis.report import estimate_dict
from lqcdflow.analysis.results import RELIABLE_TAUS
from lqcdflow.flows import FlowSpec, cosine_lr, nmcmc, train
from lqcdflow.mc.driver import run_chain
from lqcdflow.mc.hmc import HMC, initial_state
from lqcdflow.mc.integrators import SCHEMES
from lqcdflow.parallel import Lattice
from lqcdflow.rng import CounterRNG
from lqcdflow.theories.phi4 import Phi4, Phi4Couplings

M2 = -4.0
LAMBDAS = {6: 6.975, 8: 6.008, 10: 5.550, 12: 5.276, 14: 5.113}
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
MAX_MD_STEPS = 1000
Z2_SIGMAS = 3  # warn when a chain's <m> is farther from 0 than this many errors
PROGRESS_CHUNK = 250  # training steps between progress lines
# FlowSpec fields the tool sets itself (ensemble, seed) or has its own options for
OWN_FIELDS = {"shape", "m2", "lam", "seed", "n_layers", "hidden", "kernel_size"}


def _spec_defaults():
    """{field name: default} of the FlowSpec fields with defaults (architecture options)."""
    out = {}
    for f in dataclasses.fields(FlowSpec):
        if f.name in OWN_FIELDS:
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _fraction(text):
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", choices=sorted(LAMBDAS),
                   default=sorted(LAMBDAS), help="lattice extents L (default: all)")
    arch = p.add_argument_group("flow architecture and training")
    arch.add_argument("--layers", type=_positive_int, default=16, help="coupling layers")
    arch.add_argument("--hidden", type=_positive_int, nargs="+", default=[8, 8],
                      help="hidden channels of each conditioner (default 8 8)")
    arch.add_argument("--kernel-size", type=_positive_int, default=3)
    for name, default in _spec_defaults().items():
        flag = "--" + name.replace("_", "-")
        text = f"FlowSpec.{name} (default {default})"
        if isinstance(default, bool):
            arch.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                              help=text)
        elif isinstance(default, tuple):
            arch.add_argument(flag, type=type(default[0]) if default else int, nargs="*",
                              default=list(default), help=text)
        else:
            arch.add_argument(flag, type=type(default), default=default, help=text)
    arch.add_argument("--batch", type=_positive_int, default=64, help="training batch")
    arch.add_argument("--steps", type=_positive_int, default=2500, help="training steps")
    arch.add_argument("--lr", type=float, default=1e-3, help="initial learning rate (cosine)")
    arch.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                      help="of the flow (HMC is float64)")
    flow = p.add_argument_group("flow MCMC")
    flow.add_argument("--n-flow", type=_positive_int, default=16384,
                      help="flow MCMC proposals (default 16384)")
    flow.add_argument("--sample-batch", type=_positive_int, default=1024,
                      help="proposals per flow evaluation (does not change the chain)")
    hmc = p.add_argument_group("HMC")
    hmc.add_argument("--integrator", choices=sorted(SCHEMES), default="omelyan2")
    hmc.add_argument("--hmc-acceptance", type=_fraction, default=0.7,
                     help="tuning target: the least n_steps reaching this acceptance")
    hmc.add_argument("--hmc-tune", type=_positive_int, default=200,
                     help="trajectories per tuning trial")
    hmc.add_argument("--hmc-therm", type=int, default=200,
                     help="thermalisation trajectories after tuning")
    hmc.add_argument("--hmc-max-seconds", type=float, default=float("inf"),
                     help="cap of the HMC measured run when matching the flow's total time")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="clock of the cost matching and rates (JSON has both)")
    p.add_argument("--threads", type=_positive_int, default=1, help="torch threads")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the prior, the initial parameters and the samplers")
    p.add_argument("--json", metavar="PATH", help="write every figure to PATH")
    p.add_argument("--series", action="store_true", help="also the m series in the JSON")
    args = p.parse_args(argv)
    if args.n_flow < MIN_SAMPLES:
        p.error(f"--n-flow must be at least {MIN_SAMPLES}")
    if args.hmc_therm < 0:
        p.error("--hmc-therm must be >= 0")
    return args


class Stopwatch:
    """Wall-clock and process CPU seconds since creation."""

    def __init__(self):
        self.start = {name: clock() for name, clock in CLOCKS.items()}

    def seconds(self):
        return {name: clock() - self.start[name] for name, clock in CLOCKS.items()}


def make_spec(args, L):
    arch = {name: (tuple(getattr(args, name)) if isinstance(default, tuple)
                   else getattr(args, name))
            for name, default in _spec_defaults().items()}
    return FlowSpec(shape=(L, L), n_layers=args.layers, hidden=tuple(args.hidden),
                    kernel_size=args.kernel_size, m2=M2, lam=LAMBDAS[L], seed=args.seed,
                    **arch)


def run_flow(args, lattice, say):
    """Train the flow, then run flow MCMC; returns the figures and the m series."""
    spec = make_spec(args, lattice.shape[0])
    watch = Stopwatch()
    flow = spec.build(lattice, init_seed=args.seed, dtype=getattr(torch, args.dtype))
    optimizer = torch.optim.Adam(flow.parameters(), lr=args.lr)
    schedule = cosine_lr(args.lr, args.steps)
    metrics = []
    while len(metrics) < args.steps:
        count = min(PROGRESS_CHUNK, args.steps - len(metrics))
        metrics += train(flow, optimizer, spec.target(lattice), args.batch, count, schedule,
                         start=len(metrics))
        last = metrics[-count:]
        say(f"  train step {len(metrics)}/{args.steps}: loss {np.mean([m.loss for m in last]):.4f}"
            f", batch ESS/N {np.mean([m.ess for m in last]):.3f}")
    train_time = watch.seconds()

    watch = Stopwatch()
    result, _ = nmcmc(flow, spec.theory(lattice), spec.target(lattice), args.n_flow,
                      args.sample_batch, args.seed, draw=args.steps)
    sample_time = watch.seconds()
    tail = metrics[-max(1, args.steps // 10):]
    figures = {
        "spec": {k: list(v) if isinstance(v, tuple) else v
                 for k, v in dataclasses.asdict(spec).items()},
        "parameters": sum(p.numel() for p in flow.parameters()),
        "train_time_s": train_time, "sample_time_s": sample_time,
        "train_loss_last10pct": float(np.mean([m.loss for m in tail])),
        "train_batch_ess_last10pct": float(np.mean([m.ess for m in tail])),
        "n": args.n_flow, "acceptance": result.acceptance,
        "longest_rejection_run": result.longest_rejection_run, "ess": result.ess,
    }
    return figures, result.observables["m"] / lattice.volume


class Recorder:
    """Hook: m = M / V and the ``clock`` seconds since ``start`` after every trajectory."""

    def __init__(self, lattice, clock, start):
        self.lattice, self.clock, self.start = lattice, clock, start
        self.m, self.t, self.accepted = [], [], []

    def __call__(self, state, info):
        self.m.append(self.lattice.sum(state.field) / self.lattice.volume)
        self.t.append(self.clock() - self.start)
        self.accepted.append(info.accepted)


def tune(hmc, state, trajectories, target):
    """The least n_steps = 1, 2, ... whose acceptance over ``trajectories`` trajectories
    (continuing the chain from ``state``) reaches ``target``: (hmc, state, [(n, acc), ...])."""
    trials = []
    for n in range(1, MAX_MD_STEPS + 1):
        trial = HMC.of(hmc.theory, hmc.levels[0].scheme, n, hmc.trajectory_length, hmc.rng)
        first, accepted = state.trajectory, state.accepted
        state = run_chain(trial, state, first + trajectories)
        trials.append((n, (state.accepted - accepted) / trajectories))
        if trials[-1][1] >= target:
            return trial, state, trials
    raise RuntimeError(f"HMC acceptance stayed below {target} up to n_steps = {MAX_MD_STEPS}")


def run_hmc(args, lattice, flow_times, say):
    """Tune, thermalise and run HMC for the matched time; returns figures, m series and the
    number of trajectories done within the flow's sampling time."""
    clock = CLOCKS[args.clock]
    action = Phi4(lattice, Phi4Couplings.standard(M2, LAMBDAS[lattice.shape[0]],
                                                  lattice.ndim))
    rng = CounterRNG(args.seed)
    hmc = HMC.of(action, SCHEMES[args.integrator](), 1, 1.0, rng)
    watch = Stopwatch()
    hmc, state, trials = tune(hmc, initial_state(action, rng, "cold"), args.hmc_tune,
                              args.hmc_acceptance)
    state = run_chain(hmc, state, state.trajectory + args.hmc_therm)
    setup_time = watch.seconds()
    say(f"  HMC n_steps {hmc.n_steps} (tuning {trials}), setup "
        f"{setup_time[args.clock]:.1f} s")

    t_sample, t_train = flow_times["sample"][args.clock], flow_times["train"][args.clock]
    budget = max(t_sample, min(args.hmc_max_seconds,
                               t_train + t_sample - setup_time[args.clock]))
    watch = Stopwatch()
    recorder = Recorder(lattice, clock, clock())
    comm = lattice.comm

    def spent():  # collective: rank 0's clock decides for all
        return comm.bcast(clock() - recorder.start >= budget if comm.Get_rank() == 0 else None,
                          root=0)

    first = state.trajectory
    state = run_chain(hmc, state, math.inf, [recorder], stop=spent)
    run_time = watch.seconds()
    n_a = int(np.searchsorted(recorder.t, t_sample, side="right"))
    figures = {
        "integrator": args.integrator, "n_steps": hmc.n_steps, "trajectory_length": 1.0,
        "tuning": [{"n_steps": n, "acceptance": a} for n, a in trials],
        "thermalization": args.hmc_therm, "setup_time_s": setup_time,
        "run_time_s": run_time, "budget_s": budget, "first_measured": first + 1,
        "n": len(recorder.m), "n_within_sample_time": n_a,
        "acceptance": float(np.mean(recorder.accepted)),
    }
    return figures, np.asarray(recorder.m), n_a


def analyse(m, volume):
    """Gamma-method estimates of <m>, <|m|>, <m^2>, chi_2 = V (<m^2> - <m>^2) and
    V <m^2> of a series m, N / (2 tau) with tau the larger tau_int of |m| and m^2, and
    whether N >= RELIABLE_TAUS tau_int for all of them (and m varies); None if too short."""
    if len(m) < MIN_SAMPLES:
        return None
    mean_m, mean_m2 = observable([m]), observable([m * m])
    out = {"m": estimate(mean_m), "abs_m": estimate(observable([np.abs(m)])),
           "m2": estimate(mean_m2), "chi2": estimate(volume * (mean_m2 - mean_m * mean_m)),
           "chi2_symmetric": estimate(volume * mean_m2)}
    tau = max(out["abs_m"].tau_int, out["m2"].tau_int)
    # a chain that never moved has a constant series, which the Gamma method calls i.i.d.
    reliable = bool(np.ptp(m) > 0) and all(len(m) >= RELIABLE_TAUS * e.tau_int
                                          for e in out.values())
    return {**{k: estimate_dict(e) for k, e in out.items()},
            "n_eff": len(m) / (2 * tau), "tau_max": tau, "reliable": reliable}


def compare(args, L, say):
    """Flow and HMC at L: the figures of both chains and their comparison."""
    lattice = Lattice((L, L), comm=MPI.COMM_WORLD)
    say(f"L = {L}, lambda = {LAMBDAS[L]}")
    flow, m_flow = run_flow(args, lattice, say)
    times = {"train": flow["train_time_s"], "sample": flow["sample_time_s"]}
    say(f"  flow: training {times['train'][args.clock]:.1f} s, sampling "
        f"{times['sample'][args.clock]:.1f} s, acceptance {flow['acceptance']:.3f}")
    hmc, m_hmc, n_a = run_hmc(args, lattice, times, say)
    say(f"  HMC: {hmc['n']} trajectories in {hmc['run_time_s'][args.clock]:.1f} s, "
        f"acceptance {hmc['acceptance']:.3f}")
    V = lattice.volume
    flow["analysis"] = analyse(m_flow, V)
    hmc["analysis_sample_time"] = analyse(m_hmc[:n_a], V)
    hmc["analysis"] = analyse(m_hmc, V)
    c = args.clock
    t_flow = {"sampling": times["sample"][c], "total": times["train"][c] + times["sample"][c]}
    t_hmc = {"sampling": hmc["run_time_s"][c],
             "total": hmc["setup_time_s"][c] + hmc["run_time_s"][c]}
    rates = {"flow": {k: flow["analysis"]["n_eff"] / t for k, t in t_flow.items()},
             "hmc": {k: hmc["analysis"]["n_eff"] / t for k, t in t_hmc.items()}}
    cf, ch = flow["analysis"]["chi2"], hmc["analysis"]["chi2"]
    deviation = (cf["value"] - ch["value"]) / math.hypot(cf["error"], ch["error"])
    row = {"L": L, "lambda": LAMBDAS[L], "m2": M2, "volume": V, "flow": flow, "hmc": hmc,
           "effective_samples_per_s": rates, "chi2_deviation_sigma": deviation,
           "clock": c}
    for name, part in (("flow", flow), ("HMC", hmc)):
        m = part["analysis"]["m"]
        if abs(m["value"]) > Z2_SIGMAS * m["error"]:
            say(f"  warning: {name} <m> = {m['value']:.3g} +- {m['error']:.2g} is more than "
                f"{Z2_SIGMAS} sigma from 0: the chain does not sample both signs of m evenly")
    if args.series:
        row["series"] = {"flow_m": m_flow.tolist(), "hmc_m": m_hmc.tolist()}
    return row


def _pm(e, reliable, digits=4):
    return f"{e['value']:.{digits}g} ± {e['error']:.2g}" + ("" if reliable else " *")


def _tau(e):
    return f"{e['tau_int']:.2f} ± {e['tau_int_error']:.2f}"


def format_tables(rows):
    """The samplers-and-physics table and the cost table, in Markdown."""
    clock = rows[0]["clock"]
    head = ("| L | lambda | train s | flow acc | flow ESS | flow tau abs(m) | flow tau m^2 | "
            "HMC n_md | HMC acc | HMC tau abs(m) | HMC tau m^2 | chi_2 flow | chi_2 HMC | "
            "dev (sigma) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        f, h = r["flow"], r["hmc"]
        fa, ha = f["analysis"], h["analysis"]
        lines.append(
            f"| {r['L']} | {r['lambda']} | {f['train_time_s'][clock]:.1f} | "
            f"{f['acceptance']:.3f} | {f['ess']:.3g} | {_tau(fa['abs_m'])} | {_tau(fa['m2'])} | "
            f"{h['n_steps']} | {h['acceptance']:.3f} | {_tau(ha['abs_m'])} | {_tau(ha['m2'])} | "
            f"{_pm(fa['chi2'], fa['reliable'])} | {_pm(ha['chi2'], ha['reliable'])} | "
            f"{r['chi2_deviation_sigma']:+.2f} |")
    head = ("| L | flow sample s | N flow | eff/s flow sampling | eff/s flow incl. training | "
            "HMC setup s | HMC run s | N HMC | eff/s HMC run | eff/s HMC incl. setup | "
            "err chi_2 flow | err chi_2 HMC (a) | err chi_2 HMC (b) |")
    lines += ["", head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        f, h, rate = r["flow"], r["hmc"], r["effective_samples_per_s"]
        short = h["analysis_sample_time"]
        err_a = f"{short['chi2']['error']:.2g} (N={h['n_within_sample_time']})" if short else "-"
        fm, hm = ("" if part["analysis"]["reliable"] else " *" for part in (f, h))
        lines.append(
            f"| {r['L']} | {f['sample_time_s'][clock]:.2f} | {f['n']} | "
            f"{rate['flow']['sampling']:.4g}{fm} | {rate['flow']['total']:.4g}{fm} | "
            f"{h['setup_time_s'][clock]:.2f} | {h['run_time_s'][clock]:.1f} | {h['n']} | "
            f"{rate['hmc']['sampling']:.4g}{hm} | {rate['hmc']['total']:.4g}{hm} | "
            f"{f['analysis']['chi2']['error']:.2g} | {err_a} | "
            f"{h['analysis']['chi2']['error']:.2g} |")
    lines += ["", f"times: {clock} clock; tau_int per flow proposal / per HMC trajectory; "
              "flow ESS = ESS / N of the importance weights of all proposals; "
              "eff/s = N / (2 max(tau_int abs(m), tau_int m^2)) / time; chi_2 = V (<m^2> - <m>^2); "
              "(a) HMC trajectories within the flow's sampling time, (b) the whole HMC run "
              "(total time = flow training + sampling); * the chain has N < "
              f"{RELIABLE_TAUS} tau_int for one of m, abs(m), m^2, chi_2: its errors, tau_int "
              "and eff/s are unreliable (Wolff 2004, sec. 3.3)"]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rank = MPI.COMM_WORLD.Get_rank()

    def say(text):
        if rank == 0:
            print(text, file=sys.stderr, flush=True)

    try:  # the architecture is checked before any time is spent
        for L in args.sizes:
            make_spec(args, L).build(Lattice((L, L), comm=MPI.COMM_WORLD))
    except (TypeError, ValueError) as e:
        if rank == 0:
            print(f"flow_vs_hmc: error: bad flow architecture: {e}", file=sys.stderr)
        return 2
    rows = [compare(args, L, say) for L in args.sizes]
    if rank == 0:
        print(format_tables(rows))
        if args.json:
            doc = {"command": sys.argv, "torch": torch.__version__,
                   "host": platform.node(), "ranks": MPI.COMM_WORLD.Get_size(),
                   "threads": args.threads, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "results": rows}
            with open(args.json, "w") as f:
                json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
