"""Flow-based Markov chain Monte Carlo for n steps, with the per-configuration series.

:func:`nmcmc` runs the independence Metropolis chain of
:class:`~lqcdflow.flows.sampler.IndependenceMetropolis` (proposals, decisions, state and
restarts are the sampler's; see :mod:`lqcdflow.flows.sampler`) and records, after each step,
the theory's global-sum observables of the chain's configuration (``sum_observables``: S, and
M for phi^4, <cos theta_P> and Q for U(1); computed for a block of proposals at once, so the
chain needs no collective per step). Reported over the run's
n proposals: the acceptance rate, the longest run of consecutive rejections, and the effective
sample size per proposal of their importance weights, ESS / N = (sum_k w_k)^2 / (N sum_k
w_k^2) (see :func:`lqcdflow.flows.train.ess_fraction`).
"""

from dataclasses import dataclass

import numpy as np
import torch

# ChainState and STREAM_NMCMC are part of this module's interface (lqcdflow.flows exports them).
from lqcdflow.flows.sampler import STREAM_NMCMC, ChainState, IndependenceMetropolis
from lqcdflow.flows.train import ess_fraction
from lqcdflow.mc.driver import run_chain

__all__ = ["STREAM_NMCMC", "ChainState", "NMCMCResult", "nmcmc"]


@dataclass
class NMCMCResult:
    """Per configuration of the chain (after each proposal): the theory's sum observables
    ({name: array with one entry per step}, e.g. phi^4's ``m`` and ``action``) and whether
    the proposal was accepted; and the run's summary statistics."""

    observables: dict
    accepted: np.ndarray
    acceptance: float
    longest_rejection_run: int
    ess: float


def _longest_run(rejected):
    """Length of the longest run of True in a bool array."""
    longest = current = 0
    for r in rejected:
        current = current + 1 if r else 0
        longest = max(longest, current)
    return longest


def nmcmc(flow, theory, target, n_steps, batch, seed, draw, state=None):
    """Run ``n_steps`` independence-Metropolis steps; collective over the lattice's ranks.

    Parameters
    ----------
    flow : Flow
        Or any object with ``sample(batch, draw, start) -> (phi, log q)``.
    theory : lqcdflow.theories.base.Theory
        The target theory on the chain's lattice (``theory.lattice``).
    target : lqcdflow.theories.base.Theory
        The same theory on ``TorchLattice(theory.lattice)``: S = ``target.action(phi)``.
    n_steps : int
        Proposals to run (the number of configurations returned).
    batch : int
        Proposals generated per flow evaluation (does not change the chain).
    seed : int
        Key of the accept/reject uniforms.
    draw : int
        Draw number of the proposals; keep it apart from the training draws (step numbers).
    state : ChainState, optional
        Continue this chain; a fresh chain starts in proposal 0.

    Returns
    -------
    (NMCMCResult, ChainState)
    """
    first = 0 if state is None else state.trajectory
    sampler = IndependenceMetropolis(flow, theory.lattice, target, batch, seed, draw,
                                     last=first + n_steps)
    if state is None:
        state = sampler.initial_state()
        current = sampler.proposal(0).observables
    else:
        current = {name: float(value)
                   for name, value in theory.sum_observables(state.field).items()}
    series = {name: [] for name in current}
    accepted, log_weights = [], []

    def record(state, info):
        nonlocal current
        new = sampler.proposal(info.trajectory)  # the block just used: no flow evaluation
        if info.accepted:
            current = new.observables
        for name, value in current.items():
            series[name].append(value)
        accepted.append(info.accepted)
        log_weights.append(new.log_weight)

    state = run_chain(sampler, state, first + n_steps, hooks=[record])
    accepted = np.asarray(accepted, dtype=bool)
    result = NMCMCResult({name: np.asarray(values) for name, values in series.items()},
                         accepted, float(accepted.mean()), _longest_run(~accepted),
                         ess_fraction(torch.tensor(log_weights, dtype=torch.float64)))
    return result, state
