"""Flow quality at one point: train at a fixed budget of samples, then ESS and acceptance.

    python tools/flow_target.py [--coupling spline] [--layers 8] [--batch 32] [--lr 3e-3] ...

Trains a flow (:class:`lqcdflow.flows.FlowSpec`, prior seed 1, reverse KL, Adam with the cosine
schedule, step n on draw n) on one process for ``--samples / --batch`` steps, then runs
``--eval`` steps of the independence Metropolis chain (:func:`lqcdflow.flows.nmcmc`, seed 3,
draw 10^6) and prints, and appends to ``--json`` as one line, the training time (wall clock),
the chain's acceptance, the ESS / N of the importance weights of all its proposals,

    ESS / N = (sum_k w_k)^2 / (N sum_k w_k^2),   log w_k = -S(phi_k) - log q(phi_k),

and the longest run of rejections. Default point: the flow tutorial's L = 8, m^2 = -4,
lambda = 8 (standard action), with the issue's budget of 160,000 training samples.
"""

import argparse
import json
import sys
import time

import torch
from mpi4py import MPI

from lqcdflow.flows import FlowSpec, constant_lr, cosine_lr, nmcmc, train_step
from lqcdflow.parallel import Lattice

PRIOR_SEED, CHAIN_SEED, CHAIN_DRAW = 1, 3, 10**6


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--L", type=int, default=8)
    p.add_argument("--m2", type=float, default=-4.0)
    p.add_argument("--lam", type=float, default=8.0)
    p.add_argument("--coupling", default="spline", choices=("affine", "spline"))
    p.add_argument("--z2", type=int, default=1, choices=(0, 1))
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--hidden", type=int, nargs="+", default=[8, 8])
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--bins", type=int, default=8)
    p.add_argument("--bound", type=float, default=4.0)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--samples", type=int, default=160000, help="training budget")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--schedule", default="cosine", choices=("cosine", "constant"))
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--init-seed", type=int, default=0)
    p.add_argument("--eval", type=int, default=16384, help="chain length")
    p.add_argument("--tag", default="")
    p.add_argument("--json", metavar="PATH", help="append the result as a JSON line")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    lattice = Lattice((a.L, a.L), comm=MPI.COMM_SELF)
    spec = FlowSpec((a.L, a.L), a.layers, tuple(a.hidden), a.kernel, a.m2, a.lam,
                    seed=PRIOR_SEED, coupling=a.coupling, bins=a.bins, bound=a.bound,
                    z2=bool(a.z2))
    flow = spec.build(lattice, init_seed=a.init_seed, dtype=getattr(torch, a.dtype))
    optimizer = torch.optim.Adam(flow.parameters(), lr=a.lr)
    steps = a.samples // a.batch
    schedule = cosine_lr(a.lr, steps) if a.schedule == "cosine" else constant_lr(a.lr)
    start, recent = time.time(), []
    for n in range(steps):
        recent = (recent + [train_step(flow, optimizer, spec.target(lattice), a.batch, n,
                                       schedule)])[-50:]
        if n % max(1, steps // 10) == 0:
            print(f"step {n} loss {recent[-1].loss:.4f} batch ESS (last 50) "
                  f"{sum(m.ess for m in recent) / len(recent):.3f} {time.time() - start:.0f} s",
                  flush=True)
    train_s = time.time() - start
    result, _ = nmcmc(flow, spec.theory(lattice), spec.target(lattice), a.eval, 1024,
                      seed=CHAIN_SEED, draw=CHAIN_DRAW)
    out = dict(vars(a), train_s=train_s, ess=result.ess, acceptance=result.acceptance,
               longest=result.longest_rejection_run,
               n_params=sum(p.numel() for p in flow.parameters()))
    print("RESULT", json.dumps(out), flush=True)
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
