"""Autocorrelation of HMC in 2D U(1) gauge theory against beta: the baseline a flow must beat.

Usage
-----
::

    python tools/u1_autocorrelation.py [--sizes 8 16] [--betas 1 2 3 4 5 6]
        [--trajectories 10000] [--n-steps 10] [--seed 1] [--json]

For each L x L torus and beta: an HMC chain (omelyan2, tau = 1, ``--n-steps`` steps, hot
start, the first 10 % dropped) measured after every trajectory, and the Gamma-method (pyerrors,
S = 2) integrated autocorrelation times, in trajectories, of the topological charge Q and of
the plaquette, with the acceptance, chi_t = <Q^2>/V and <cos theta_P> against the exact
finite-volume values (``tests/exact_u1.py``). A row whose chain is shorter than 100 tau_int(Q)
is marked: its tau_int (and error) is then a lower bound, as when Q freezes.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

from lqcdflow.analysis.gamma import mean
from lqcdflow.kernels.select import md_kernels
from lqcdflow.mc.driver import run_chain
from lqcdflow.mc.hmc import HMC, initial_state
from lqcdflow.mc.integrators import omelyan2
from lqcdflow.parallel import Lattice
from lqcdflow.rng import CounterRNG
from lqcdflow.theories.u1 import U1

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import exact_u1  # noqa: E402  (the exact 2D results live with the tests)

RELIABLE_TAUS = 100


def chain(L, beta, n_traj, n_steps, seed):
    """Q, plaquette and acceptance series of a 2D U(1) HMC chain, thermalisation dropped."""
    theory = U1(Lattice((L, L), comm=MPI.COMM_SELF), beta)
    rng = CounterRNG(seed)
    # the kernels `lqcdflow run` takes ("auto"): the chain's bits are the same on any kernels,
    # its time is not
    hmc = HMC.of(theory, omelyan2(), n_steps, 1.0, rng, md_kernels(theory, "auto"))
    q, plaquette, accepted = [], [], []

    def record(state, info):
        values = theory.measure(state.field)
        q.append(values["topological_charge"])
        plaquette.append(values["plaquette"])
        accepted.append(info.accepted)

    start = time.perf_counter()
    run_chain(hmc, initial_state(theory, rng, "hot"), n_traj, [record])
    seconds = time.perf_counter() - start
    cut = n_traj // 10
    return (np.array(q[cut:]), np.array(plaquette[cut:]), np.array(accepted[cut:], float),
            seconds / n_traj)


def figures(q, plaquette, L, beta):
    """tau_int(Q), chi_t = <Q^2>/V and <cos theta_P> of the series, with the exact values;
    ``reliable`` when the chain is at least RELIABLE_TAUS tau_int(Q) long."""
    V = L * L
    tau_q, chi, plaq = mean(q), mean(q * q / V), mean(plaquette)
    return {
        "tau_int_Q": tau_q.tau_int, "tau_int_Q_error": tau_q.tau_int_error,
        "chi_t": chi.value, "chi_t_error": chi.error,
        "chi_t_exact": exact_u1.topological_susceptibility(beta, V),
        "plaquette": plaq.value, "plaquette_error": plaq.error,
        "plaquette_exact": exact_u1.plaquette(beta, V),
        "reliable": bool(len(q) >= RELIABLE_TAUS * tau_q.tau_int),
    }


def row(L, beta, n_traj, n_steps, seed):
    q, plaquette, accepted, seconds = chain(L, beta, n_traj, n_steps, seed)
    tau_p = mean(plaquette)
    return {
        "L": L, "beta": beta, "trajectories": len(q), "acceptance": float(accepted.mean()),
        "s_per_traj": seconds, **figures(q, plaquette, L, beta),
        "tau_int_plaquette": tau_p.tau_int, "tau_int_plaquette_error": tau_p.tau_int_error,
        "distinct_Q": int(len(np.unique(q))),
    }


def format_table(rows):
    lines = [f"{'L':>3} {'beta':>5} {'acc':>6} {'tau_int(Q)':>14} {'tau_int(P)':>12} "
             f"{'chi_t':>20} {'exact':>9} {'<cos P>':>18} {'exact':>8}"]
    for r in rows:
        mark = "" if r["reliable"] else " (>=; N < 100 tau)"
        lines.append(
            f"{r['L']:>3} {r['beta']:>5.1f} {r['acceptance']:>6.3f} "
            f"{r['tau_int_Q']:>7.3g} +- {r['tau_int_Q_error']:<4.2g} "
            f"{r['tau_int_plaquette']:>5.3g} +- {r['tau_int_plaquette_error']:<4.2g} "
            f"{r['chi_t']:>9.5f} +- {r['chi_t_error']:<7.2g} {r['chi_t_exact']:>9.5f} "
            f"{r['plaquette']:>8.5f} +- {r['plaquette_error']:<6.1g} {r['plaquette_exact']:>8.5f}"
            + mark)
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[8, 16])
    p.add_argument("--betas", type=float, nargs="+", default=[1, 2, 3, 4, 5, 6])
    p.add_argument("--trajectories", type=int, default=10000)
    p.add_argument("--n-steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = []
    for L in args.sizes:
        for beta in args.betas:
            rows.append(row(L, beta, args.trajectories, args.n_steps, args.seed))
            print(format_table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(json.dumps(rows, indent=1) if args.json else format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
