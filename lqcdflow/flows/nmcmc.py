"""Flow-based Markov chain Monte Carlo for n steps, with the per-configuration series.

:func:`nmcmc` runs the independence Metropolis chain of
:class:`~lqcdflow.flows.sampler.IndependenceMetropolis` (proposals, decisions, state and
restarts are the sampler's; see :mod:`lqcdflow.flows.sampler`) and records, after each step,
the chain's M = sum_x phi_x, |M|, M^2 and S. Reported over the run's n proposals: the
acceptance rate, the longest run of consecutive rejections, and the effective sample size per
proposal of their importance weights, ESS / N = (sum_k w_k)^2 / (N sum_k w_k^2) (see
:func:`lqcdflow.flows.train.ess_fraction`).
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
    """Per configuration of the chain (after each proposal): M = sum_x phi_x (global), |M|,
    M^2, S and whether the proposal was accepted; and the run's summary statistics."""

    magnetisation: np.ndarray
    abs_magnetisation: np.ndarray
    magnetisation_sq: np.ndarray
    action: np.ndarray
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


def nmcmc(flow, lattice, m2, lam, n_steps, batch, seed, draw, state=None):
    """Run ``n_steps`` independence-Metropolis steps; collective over ``lattice.comm``.

    Parameters
    ----------
    flow : Flow
        Or any object with ``sample(batch, draw, start) -> (phi, log q)``.
    lattice : lqcdflow.parallel.Lattice
    m2, lam : float
        Standard-form couplings of the target (:func:`phi4_action`).
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
    sampler = IndependenceMetropolis(flow, lattice, m2, lam, batch, seed, draw,
                                     last=first + n_steps)
    if state is None:
        state = sampler.initial_state()
        initial = sampler.proposal(0)
        current = (initial.magnetisation, initial.action)
    else:
        action, mag = sampler.observables(torch.as_tensor(state.field)[None])
        current = (float(mag[0]), float(action[0]))
    series = {"magnetisation": [], "action": [], "accepted": [], "log_weight": []}

    def record(state, info):
        nonlocal current
        new = sampler.proposal(info.trajectory)  # the block just used: no flow evaluation
        if info.accepted:
            current = (new.magnetisation, new.action)
        series["magnetisation"].append(current[0])
        series["action"].append(current[1])
        series["accepted"].append(info.accepted)
        series["log_weight"].append(new.log_weight)

    state = run_chain(sampler, state, first + n_steps, hooks=[record])
    mags = np.asarray(series["magnetisation"])
    accepted = np.asarray(series["accepted"], dtype=bool)
    result = NMCMCResult(mags, np.abs(mags), mags * mags, np.asarray(series["action"]),
                         accepted, float(accepted.mean()), _longest_run(~accepted),
                         ess_fraction(torch.tensor(series["log_weight"], dtype=torch.float64)))
    return result, state
