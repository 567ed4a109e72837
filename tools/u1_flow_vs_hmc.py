"""Gauge-equivariant flow MCMC against HMC in 2D U(1), where HMC's topological charge freezes:
the cost of one independent sample of Q.

Usage
-----
::

    python tools/u1_flow_vs_hmc.py [--sizes 8 16] [--betas 2 3 4 5 6] [--part flow|hmc|both]
        [--layers 16] [--hidden 8 8] [--kernel-size 3] [--coupling ncp|spline]
        [--components 2] [--bins 8] [--batch 64]
        [--steps 1000 [1000]] [--lr 1e-3] [--warm-start [beta] [size]] [--warm-lr LR]
        [--max-grad-norm 0] [--save-states DIR | --states DIR JSON]
        [--n-flow 20000 [20000]] [--sample-batch 1000]
        [--hmc-trajectories 20000] [--hmc-acceptance 0.9] [--hmc-tune 200] [--seed 1]
        [--json out.json]
    python tools/u1_flow_vs_hmc.py --load flow.json hmc.json [--plot out.png]

What is done for each L x L torus and beta
------------------------------------------
flow (``--part flow``): a :class:`lqcdflow.flows.gauge.U1FlowSpec` flow (Haar prior, NCP
couplings of ``--components`` or circular splines of ``--bins``) trained by reverse KL with Adam for ``--steps`` steps of ``--batch`` samples and
the cosine schedule lr(n) = lr (1 + cos(pi n / steps)) / 2 (``--steps``: one number per
size, in the order of ``--sizes``, or one for all); its progress lines give
KL(q || p) = <log q + S>_q + log Z from the exact partition function. With ``--warm-start
size`` each flow starts from the trained parameters of the previous L at the same beta (the
layers are convolutions: their parameters do not depend on L), with ``--warm-start beta``
(or where there is no previous L) from those of the previous beta at the same L; the
training time of every flow it descends from is then counted too, and its learning rate is
``--warm-lr`` (a large one throws a trained flow far off before it learns the new beta).
``--max-grad-norm`` c > 0 clips each step's gradient to norm c
(:func:`lqcdflow.flows.train.descend`): at beta >= 5 rare batches of huge weights otherwise
throw the flow back (KL 10.8 -> 26 within 200 steps at beta = 5).
``--save-states DIR`` writes every trained flow (lqcdflow.flows.save_state) into DIR, and a
later run with ``--states DIR JSON`` samples those flows, with the training figures of that
run's JSON, instead of training: longer chains of the same flows.
Then an independence-Metropolis chain (:func:`lqcdflow.flows.nmcmc`) of ``--n-flow``
proposals (per size, like ``--steps``) records Q, the plaquette, the acceptance and the ESS
per proposal.

HMC (``--part hmc``): omelyan2, tau = 1, the least n_steps whose acceptance over ``--hmc-tune``
trajectories reaches ``--hmc-acceptance`` (tools/flow_vs_hmc.py's tuning; higher n_steps
only cost more per trajectory), then a chain of ``--hmc-trajectories`` from a hot start, the
first 10 % dropped, every trajectory measured (tools/u1_autocorrelation.py's chain; its
time, measurements included, is the cost).

Both: Gamma-method (pyerrors, S = 2) tau_int(Q) in chain steps, chi_t = <Q^2>/V and the
plaquette against the exact finite-volume values (tests/exact_u1.py), and the CPU cost of one
independent Q sample,

    c = t / (N / (2 tau_int(Q))),

t the process CPU time of the N steps (flow: sampling only, and training plus sampling, the
latter for this N: training is paid once per ensemble, so it weighs less in longer runs).
A chain shorter than 100 tau_int(Q) gives a lower bound on tau_int and on its c (marked).
For a flow of low acceptance even 400 tau_int are not enough: its chain sticks for long
stretches on rare proposals of large weight that a short chain has not met (at L = 8,
beta = 6: tau_int(Q) = 71(16) from 3e4 proposals, 699(126) from 5e5); the rows record the
longest run of rejections.
The two parts can run at once, one per core (``--part flow`` and ``--part hmc`` with
``--json``); ``--load`` then prints the table of both and draws the plot.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from mpi4py import MPI

from lqcdflow.flows import cosine_lr, load_state, nmcmc, save_state, train
from lqcdflow.flows.gauge import U1FlowSpec
from lqcdflow.mc.hmc import HMC, initial_state
from lqcdflow.mc.integrators import omelyan2
from lqcdflow.parallel import Lattice
from lqcdflow.rng import CounterRNG
from lqcdflow.theories.u1 import U1

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flow_vs_hmc import tune  # noqa: E402  (one tuning rule for both comparisons)
from u1_autocorrelation import chain, figures  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import exact_u1  # noqa: E402  (the exact 2D results live with the tests)

PROGRESS_EVERY = 100


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[8, 16])
    p.add_argument("--betas", type=float, nargs="+", default=[2, 3, 4, 5, 6])
    p.add_argument("--part", choices=["flow", "hmc", "both"], default="both")
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--hidden", type=int, nargs="+", default=[8, 8])
    p.add_argument("--kernel-size", type=int, default=3)
    p.add_argument("--coupling", choices=["ncp", "spline"], default="ncp")
    p.add_argument("--components", type=int, default=2)
    p.add_argument("--bins", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, nargs="+", default=[1000],
                   help="training steps, one number per size or one for all")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warm-start", nargs="*", choices=["beta", "size"], default=[])
    p.add_argument("--warm-lr", type=float, help="lr of warm-started flows (default: --lr)")
    p.add_argument("--max-grad-norm", type=float, default=0.0,
                   help="clip each gradient to this norm (0: no clipping)")
    p.add_argument("--save-states", help="write each trained flow into this directory")
    p.add_argument("--states", nargs=2, metavar=("DIR", "JSON"),
                   help="sample the flows --save-states wrote into DIR instead of training, "
                   "with the training figures of JSON, that run's --json")
    p.add_argument("--n-flow", type=int, nargs="+", default=[20000],
                   help="flow MCMC proposals, one number per size or one for all")
    p.add_argument("--sample-batch", type=int, default=1000)
    p.add_argument("--hmc-trajectories", type=int, default=20000)
    p.add_argument("--hmc-acceptance", type=float, default=0.9)
    p.add_argument("--hmc-tune", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--load", nargs="+", help="JSON files of earlier runs: table and plot only")
    p.add_argument("--plot", help="with --load: draw cost against beta into this PNG")
    return p.parse_args(argv)


def log_partition(beta, volume):
    """log Z = log int prod dtheta e^(-S) = 2V log(2 pi) - beta V + log sum_n I_n(beta)^V
    (tests/exact_u1.py), so that KL(q || p) = <log q + S>_q + log Z."""
    ratios = [exact_u1.bessel_i(n, beta) / exact_u1.bessel_i(0, beta) for n in range(1, 40)]
    return (2 * volume * math.log(2 * math.pi) - beta * volume
            + volume * math.log(exact_u1.bessel_i(0, beta))
            + math.log1p(2 * sum(r ** volume for r in ratios)))


def q_figures(q, plaquette, L, beta, seconds):
    """The series' figures (tools/u1_autocorrelation.py) and the cost of one independent Q
    sample."""
    values = figures(q, plaquette, L, beta)
    return {"n": len(q), **values, "cost_s": seconds * 2 * values["tau_int_Q"] / len(q)}


def state_path(directory, L, beta):
    return Path(directory) / f"u1_L{L}_beta{beta:g}.flow.h5"


def train_flow(args, spec, lattice, log_z, previous, say):
    """Train ``spec``'s flow from scratch or from ``previous`` = (parameters, training
    seconds); returns (flow, {train_s, kl, steps, lr, warm_started})."""
    L = spec.shape[0]
    flow = spec.build(lattice, init_seed=args.seed)
    steps = args.steps[min(args.sizes.index(L), len(args.steps) - 1)]
    train_s = 0.0
    if previous is not None:
        flow.load_state_dict(previous[0])
        train_s = previous[1]
    lr = args.lr if previous is None else (args.warm_lr or args.lr)
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
    schedule = cosine_lr(lr, steps)
    start = time.process_time()
    for first in range(0, steps, PROGRESS_EVERY):
        count = min(PROGRESS_EVERY, steps - first)
        metrics = train(flow, optimizer, spec.target(lattice), args.batch, count,
                        schedule, start=first, max_grad_norm=args.max_grad_norm)
        say(f"  L={L} beta={spec.beta} step {first + count}: KL(q|p) "
            f"{np.mean([m.loss for m in metrics]) + log_z:.3f} ESS/N "
            f"{np.mean([m.ess for m in metrics]):.3f}")
    train_s += time.process_time() - start
    if args.save_states:
        save_state(state_path(args.save_states, L, spec.beta), flow, optimizer, steps, spec,
                   MPI.COMM_SELF)
    return flow, {"train_s": train_s, "kl": float(np.mean([m.loss for m in metrics])) + log_z,
                  "steps": steps, "lr": lr, "max_grad_norm": args.max_grad_norm,
                  "warm_started": previous is not None}


def saved_flow(args, spec, lattice):
    """The flow ``--states`` holds for ``spec`` and its training figures (those of the row of
    the run that saved it, in ``--states``'s JSON)."""
    directory, rows = args.states
    L = spec.shape[0]
    row = next(r for r in json.loads(Path(rows).read_text())
               if r["method"] == "flow" and r["L"] == L and r["beta"] == spec.beta)
    flow = spec.build(lattice, init_seed=args.seed)
    load_state(state_path(directory, L, spec.beta), flow, torch.optim.Adam(flow.parameters()),
               spec, MPI.COMM_SELF)
    return flow, {key: row[key] for key in ("train_s", "kl", "steps", "lr", "max_grad_norm",
                                            "warm_started")}


def flow_rows(args, say):
    """Train (or load) and sample a flow for every (L, beta)."""
    rows, trained = [], {}
    for L in args.sizes:
        lattice = Lattice((L, L), comm=MPI.COMM_SELF)
        previous_beta = None
        for beta in sorted(args.betas):
            log_z = log_partition(beta, L * L)
            spec = U1FlowSpec((L, L), args.layers, tuple(args.hidden), args.kernel_size, beta,
                              args.seed, args.components, args.coupling, args.bins)
            if args.states:
                flow, training = saved_flow(args, spec, lattice)
            else:
                previous = next((trained[key] for mode, key in
                                 (("size", beta), ("beta", (L, previous_beta)))
                                 if mode in args.warm_start and key in trained), None)
                flow, training = train_flow(args, spec, lattice, log_z, previous, say)
            trained[beta] = trained[(L, beta)] = (flow.state_dict(), training["train_s"])
            previous_beta = beta
            start = time.process_time()
            n_flow = args.n_flow[min(args.sizes.index(L), len(args.n_flow) - 1)]
            with torch.no_grad():
                result, _ = nmcmc(flow, spec.theory(lattice), spec.target(lattice), n_flow,
                                  args.sample_batch, args.seed, draw=training["steps"])
            sample_s = time.process_time() - start
            values = q_figures(result.observables["topological_charge"],
                               result.observables["plaquette"], L, beta, sample_s)
            rows.append({"method": "flow", "L": L, "beta": beta, **values, **training,
                         "cost_with_training_s": values["cost_s"]
                         * (training["train_s"] + sample_s) / sample_s,
                         "sample_s": sample_s,
                         "acceptance": result.acceptance, "ess": result.ess,
                         "longest_rejection_run": result.longest_rejection_run,
                         "layers": args.layers, "coupling": args.coupling,
                         "components": args.components, "bins": args.bins,
                         "batch": args.batch})
            say(format_table(rows[-1:]).splitlines()[-1])
    return rows


def hmc_rows(args, say):
    """Tune n_steps and run an HMC chain for every (L, beta)."""
    rows = []
    for L in sorted(args.sizes):
        for beta in args.betas:
            theory = U1(Lattice((L, L), comm=MPI.COMM_SELF), beta)
            rng = CounterRNG(args.seed + 1)
            hmc, _, _ = tune(HMC.of(theory, omelyan2(), 1, 1.0, rng),
                             initial_state(theory, rng, "hot"), args.hmc_tune,
                             args.hmc_acceptance)
            n_steps = hmc.levels[0].n_steps
            start = time.process_time()
            q, plaquette, accepted, _ = chain(L, beta, args.hmc_trajectories, n_steps,
                                              args.seed)
            seconds = (time.process_time() - start) * len(q) / args.hmc_trajectories
            rows.append({"method": "hmc", "L": L, "beta": beta, "n_steps": n_steps,
                         **q_figures(q, plaquette, L, beta, seconds),
                         "acceptance": accepted.mean()})
            say(format_table(rows[-1:]).splitlines()[-1])
    return rows


def _bound(r, value, digits=3):
    return ("" if r["reliable"] else ">=") + f"{value:.{digits}g}"


def format_table(rows):
    lines = [f"{'method':>6} {'L':>3} {'beta':>5} {'acc':>6} {'ESS':>6} {'tau_int(Q)':>14} "
             f"{'chi_t':>20} {'exact':>8} {'z':>5} {'c [ms]':>10} {'c+train [ms]':>12}"]
    for r in rows:
        z = (r["chi_t"] - r["chi_t_exact"]) / r["chi_t_error"] if r["chi_t_error"] else math.inf
        with_training = r.get("cost_with_training_s")
        lines.append(
            f"{r['method']:>6} {r['L']:>3} {r['beta']:>5.1f} {r['acceptance']:>6.3f} "
            f"{r.get('ess', math.nan):>6.3f} "
            f"{_bound(r, r['tau_int_Q']):>7} +- {r['tau_int_Q_error']:<4.2g} "
            f"{r['chi_t']:>9.5f} +- {r['chi_t_error']:<7.2g} {r['chi_t_exact']:>8.5f} "
            f"{z:>5.1f} {_bound(r, 1e3 * r['cost_s']):>10} "
            + (f"{_bound(r, 1e3 * with_training):>12}" if with_training else f"{'':>12}"))
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = {("hmc", "cost_s"): ("HMC", "o-"), ("flow", "cost_s"): ("flow MCMC", "s-"),
              ("flow", "cost_with_training_s"): ("flow MCMC, training included", "s--")}
    for L in sorted({r["L"] for r in rows}):
        for (method, key), (label, style) in styles.items():
            mine = sorted((r for r in rows if r["L"] == L and r["method"] == method),
                          key=lambda r: r["beta"])
            if mine:
                ax.plot([r["beta"] for r in mine], [1e3 * r[key] for r in mine], style,
                        label=f"{label}, L = {L}", alpha=1.0 if L == min(r["L"] for r in rows)
                        else 0.6)
                low = [r for r in mine if not r["reliable"]]
                ax.plot([r["beta"] for r in low], [1e3 * r[key] for r in low], "^k", ms=4)
    ax.set_yscale("log")
    ax.set_xlabel("beta")
    ax.set_ylabel("CPU ms per independent Q sample")
    ax.set_title("2D U(1): cost of an independent topological charge (^: lower bound)",
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    args = parse_args(argv)

    def say(text):
        print(text, file=sys.stderr, flush=True)

    if args.load:
        rows = [r for path in args.load for r in json.loads(Path(path).read_text())]
    else:
        torch.set_num_threads(1)
        rows = []
        if args.part in ("flow", "both"):
            rows += flow_rows(args, say)
        if args.part in ("hmc", "both"):
            rows += hmc_rows(args, say)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
    rows.sort(key=lambda r: (r["L"], r["beta"], r["method"]))
    print(format_table(rows))
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
