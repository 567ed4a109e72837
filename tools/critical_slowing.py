"""Critical slowing down, measured: tau_int of |m| and of the energy against L, and the dynamic
exponent z, for the samplers of lqcdflow at a critical point.

Usage
-----
::

    python tools/critical_slowing.py [--model ising] [--sizes 8 16 32 64]
        [--algorithms metropolis heatbath] [--taus 300] [--max-seconds 600]
        [--kappa K --lambda LAM] [--width 1.0] [--hits 1] [--n-steps 4] [--epsilon 0.05]
        [--seed 1] [--json out.json] [--plot out.png]
    python tools/critical_slowing.py --load a.json b.json [--fit-from 16] [--plot out.png]

``--load`` makes the table, fits and plot of rows measured before (runs of several
invocations, e.g. an algorithm with other chain lengths) instead of running chains.

Models
------
``ising``: the 2D Ising model at Onsager's beta_c = log(1 + sqrt 2) / 2. ``phi4``: 2D phi^4 in
the hopping form at ``--kappa`` and ``--lambda`` (a point on or near the critical line: the
exponents are those of the 2D Ising class only there).

What is done for each algorithm and L
-------------------------------------
A chain from a hot start (``metropolis``, ``heatbath``: checkerboard sweeps; ``hmc``: omelyan2,
trajectory length 1, ``--n-steps``; ``mala``: Langevin step ``--epsilon`` with the Metropolis
test), measured after every update: |m| = |M| / V and the energy density (E / V for Ising,
S / V for phi^4); the first 20 % are dropped as thermalisation. With ``--updates`` (one
length per size) each chain has that fixed length, and a row whose kept part is shorter than
``--taus`` times the larger tau_int is marked (a lower bound, not used in fits). Without it the
chain doubles until its kept part is that long or it has used ``--max-seconds``; that rule is
quicker but biased: a chain whose estimate fluctuates low stops early (optional stopping), so
use fixed lengths for the figures.
tau_int and its error are the Gamma method's (lqcdflow.analysis.gamma, S = 2), in updates
(sweeps or trajectories). The cost of an independent sample is 2 tau_int times the seconds of
one update (updates only, measurements excluded, one core).

The fit
-------
tau_int(L) = c L^z by weighted least squares of log tau_int on log L (weights from
delta tau_int / tau_int), over the reliable rows with L >= ``--fit-from``; the error of z is
the fit's, scaled by sqrt(chi^2/dof) when that exceeds 1. The 2D Ising exponents of local
dynamics are z ~ 2.17 (Nightingale and Bloete, PRL 76 (1996) 4548).
"""

import argparse
import json
import math
import time

import numpy as np
from mpi4py import MPI

from lqcdflow.analysis.gamma import mean
from lqcdflow.kernels.select import md_kernels
from lqcdflow.mc.hmc import HMC, initial_state
from lqcdflow.mc.integrators import omelyan2
from lqcdflow.mc.langevin import langevin
from lqcdflow.mc.local import LocalSampler
from lqcdflow.parallel import Lattice
from lqcdflow.rng import CounterRNG
from lqcdflow.theories.ising import Ising
from lqcdflow.theories.phi4 import Phi4, Phi4Couplings

BETA_C = math.log(1.0 + math.sqrt(2.0)) / 2.0
THERMALISATION = 0.2  # fraction of the chain dropped
OBSERVABLES = ("abs_m", "energy")


def make_theory(args, L):
    lattice = Lattice((L, L), comm=MPI.COMM_SELF)
    if args.model == "ising":
        return Ising(lattice, BETA_C)
    return Phi4(lattice, Phi4Couplings.hopping(args.kappa, args.lambda_))


def make_update(args, theory, algorithm):
    rng = CounterRNG(args.seed)
    if algorithm in ("metropolis", "heatbath"):
        settings = {"hits": args.hits, "width": args.width} if algorithm == "metropolis" else {}
        return LocalSampler(theory, algorithm, args.seed, **settings, kernels=args.kernels)
    kernels = md_kernels(theory, args.kernels)
    if algorithm == "hmc":
        return HMC.of(theory, omelyan2(), args.n_steps, 1.0, rng, kernels)
    return langevin(theory, args.epsilon, rng, metropolis=True, kernels=kernels)


def measured(theory, field):
    """(|M| / V, energy density) of a configuration."""
    values, volume = theory.measure(field), theory.lattice.volume
    energy = values["energy"] if "energy" in values else values["action"]
    return abs(values["m"]) / volume, energy / volume


def chain(args, L, algorithm, length=None):
    """Run one chain of ``length`` updates, or until it is long enough (see the module
    docstring); its row."""
    theory = make_theory(args, L)
    update = make_update(args, theory, algorithm)
    state = initial_state(theory, CounterRNG(args.seed), "hot")
    series, acceptance, seconds = [], [], 0.0
    chunk = length or 1000
    while True:
        for _ in range(chunk):
            start = time.perf_counter()
            state, info = update.step(state)
            seconds += time.perf_counter() - start
            series.append(measured(theory, state.field))
            acceptance.append(getattr(info, "acceptance", getattr(info, "accepted", 0)))
        kept = np.array(series[int(THERMALISATION * len(series)):])
        estimates = [mean(kept[:, k]) for k in range(len(OBSERVABLES))]
        longest = max(e.tau_int for e in estimates)
        reliable = len(kept) >= args.taus * longest
        if length or reliable or seconds >= args.max_seconds:
            break
        chunk = len(series)  # double the chain
    row = {"L": L, "algorithm": algorithm, "updates": len(series),
           "acceptance": float(np.mean(acceptance)), "seconds_per_update": seconds / len(series),
           "reliable": bool(reliable)}
    for name, e in zip(OBSERVABLES, estimates):
        row[name] = {"value": e.value, "error": e.error, "tau_int": e.tau_int,
                     "tau_int_error": e.tau_int_error}
        row[f"cost_{name}"] = 2.0 * e.tau_int * row["seconds_per_update"]
    return row


def fit_z(rows, observable, fit_from):
    """(z, error of z, chi^2/dof, sizes used) of tau_int = c L^z, or None with < 2 sizes."""
    used = [r for r in rows if r["reliable"] and r["L"] >= fit_from]
    if len(used) < 2:
        return None
    x = np.log([r["L"] for r in used])
    y = np.log([r[observable]["tau_int"] for r in used])
    sigma = np.array([r[observable]["tau_int_error"] / r[observable]["tau_int"] for r in used])
    design = np.stack([np.ones_like(x), x], axis=1) / sigma[:, None]
    coefficients, *_ = np.linalg.lstsq(design, y / sigma, rcond=None)
    covariance = np.linalg.inv(design.T @ design)
    dof = len(used) - 2
    chi2 = float(np.sum(((y - np.stack([np.ones_like(x), x], 1) @ coefficients) / sigma) ** 2))
    chi2_dof = chi2 / dof if dof else float("nan")
    scale = math.sqrt(chi2_dof) if dof and chi2_dof > 1 else 1.0
    return (float(coefficients[1]), float(math.sqrt(covariance[1, 1]) * scale), chi2_dof,
            [r["L"] for r in used])


def table(rows, fits):
    lines = ["| algorithm | L | updates | acceptance | tau_int(abs m) | tau_int(E) | "
             "s/update | s per independent abs m |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mark = "" if r["reliable"] else " (lower bound)"
        lines.append(
            f"| {r['algorithm']} | {r['L']} | {r['updates']} | {r['acceptance']:.3f} | "
            f"{r['abs_m']['tau_int']:.1f}({r['abs_m']['tau_int_error']:.1f}){mark} | "
            f"{r['energy']['tau_int']:.1f}({r['energy']['tau_int_error']:.1f}) | "
            f"{r['seconds_per_update']:.2e} | {r['cost_abs_m']:.2e} |")
    lines += ["", "| algorithm | z(abs m) | z(E) | sizes |", "|---|---|---|---|"]
    for algorithm, by_observable in fits.items():
        cells = []
        for name in OBSERVABLES:
            fit = by_observable[name]
            cells.append("-" if fit is None else f"{fit[0]:.2f} +- {fit[1]:.2f} "
                                                 f"(chi2/dof {fit[2]:.1f})")
        sizes = next((f[3] for f in by_observable.values() if f), [])
        lines.append(f"| {algorithm} | {cells[0]} | {cells[1]} | {sizes} |")
    return "\n".join(lines)


def plot(rows, fits, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, name, label in zip(axes, OBSERVABLES, ("|m|", "energy")):
        for k, algorithm in enumerate(fits):
            mine = [r for r in rows if r["algorithm"] == algorithm]
            fit = fits[algorithm][name]
            text = algorithm if fit is None else f"{algorithm}: z = {fit[0]:.2f}({fit[1]:.2f})"
            for reliable in (True, False):  # open markers: lower bounds
                shown = [r for r in mine if r["reliable"] == reliable]
                if shown:
                    ax.errorbar([r["L"] for r in shown], [r[name]["tau_int"] for r in shown],
                                [r[name]["tau_int_error"] for r in shown], fmt="o",
                                color=f"C{k}", mfc=None if reliable else "none", capsize=2,
                                label=text if reliable or len(shown) == len(mine) else None)
            L = np.array([r["L"] for r in mine])
            if fit is not None:
                used = [r for r in mine if r["L"] in fit[3]]
                c = np.exp(np.mean([math.log(r[name]["tau_int"]) - fit[0] * math.log(r["L"])
                                    for r in used]))
                grid = np.geomspace(L.min(), L.max(), 50)
                ax.plot(grid, c * grid ** fit[0], color=f"C{k}", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("L")
        ax.set_title(f"tau_int of {label} (open: lower bounds)")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("tau_int (updates)")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("ising", "phi4"), default="ising")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--algorithms", nargs="+", default=["metropolis", "heatbath"],  # Ising
                        choices=("metropolis", "heatbath", "hmc", "mala"))
    parser.add_argument("--taus", type=float, default=300.0)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--updates", type=int, nargs="+",
                        help="fixed chain lengths, one per size (default: adaptive)")
    parser.add_argument("--fit-from", type=int, default=16)
    parser.add_argument("--kappa", type=float)
    parser.add_argument("--lambda", dest="lambda_", type=float)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--hits", type=int, default=1)
    parser.add_argument("--n-steps", type=int, default=4)
    parser.add_argument("--epsilon", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kernels", choices=("auto", "numpy", "compiled"), default="auto",
                        help="[run] kernels of the updates (the same chains, at other speeds)")
    parser.add_argument("--json")
    parser.add_argument("--load", nargs="+", help="JSON files of earlier runs to combine")
    parser.add_argument("--plot")
    args = parser.parse_args()
    if args.model == "phi4" and (args.kappa is None or args.lambda_ is None):
        parser.error("--model phi4 needs --kappa and --lambda")
    if args.model == "ising" and set(args.algorithms) & {"hmc", "mala"}:
        parser.error("the Ising model has no molecular dynamics: use metropolis or heatbath")
    if args.updates and len(args.updates) != len(args.sizes):
        parser.error("--updates needs one chain length per size")
    if args.model == "phi4" and "heatbath" in args.algorithms:
        parser.error("phi^4 has no heatbath: use metropolis, hmc or mala")

    if args.load:
        runs = [json.load(open(path)) for path in args.load]
        rows = [row for run in runs for row in run["rows"]]
        args.algorithms = list(dict.fromkeys(row["algorithm"] for row in rows))
        for key in ("model", "kappa", "lambda_"):
            setattr(args, key, runs[0]["arguments"][key])
        args.sizes = []  # nothing to run
    else:
        rows = []
    for algorithm in args.algorithms:
        for k, L in enumerate(args.sizes):
            rows.append(chain(args, L, algorithm, args.updates and args.updates[k]))
            r = rows[-1]
            if args.json:  # row by row: a run stopped early keeps what it measured
                with open(args.json, "w") as f:
                    json.dump({"arguments": vars(args), "rows": rows}, f, indent=1)
            print(f"{algorithm:10s} L={L:3d}: {r['updates']} updates, tau_int |m| "
                  f"{r['abs_m']['tau_int']:.1f}({r['abs_m']['tau_int_error']:.1f}), E "
                  f"{r['energy']['tau_int']:.1f}({r['energy']['tau_int_error']:.1f}), "
                  f"{'' if r['reliable'] else 'LOWER BOUND, '}"
                  f"{r['seconds_per_update'] * 1e3:.3f} ms/update", flush=True)
    fits = {a: {name: fit_z([r for r in rows if r["algorithm"] == a], name, args.fit_from)
                for name in OBSERVABLES} for a in args.algorithms}
    print(table(rows, fits))
    title = ("2D Ising at beta_c" if args.model == "ising" else
             f"2D phi^4, kappa = {args.kappa}, lambda = {args.lambda_}")
    if args.plot:
        plot(rows, fits, args.plot, title)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"arguments": vars(args), "rows": rows, "fits": fits}, f, indent=1)


if __name__ == "__main__":
    main()
