"""Flow-based Markov chain Monte Carlo: the independence Metropolis sampler.

Proposal k (k = 0, 1, ...) is sample k of draw ``draw`` of the flow, phi'_k ~ q, a pure
function of (prior seed, draw, k), whatever the batch size and the process grid. With

    log w(phi) = -S(phi) - log q(phi),

the chain in state phi accepts phi'_k with probability min(1, w(phi'_k) / w(phi)), i.e. when

    log u_k < log w(phi'_k) - log w(phi),   u_k = CounterRNG(seed).uniform([k], draw, STREAM_NMCMC),

which satisfies detailed balance with respect to p(phi) ~ exp(-S(phi)) for any q that is
positive wherever p is (exactly, given the exact log q). u_k depends on (seed, draw, k) only
and is the same on every rank; S and log q are all-reduced, so every rank takes the same decisions.
A fresh chain starts in proposal 0 and then runs proposals 1 .. n.

Reported over a run: the acceptance rate, the longest run of consecutive rejections, and the
effective sample size per proposal of the importance weights of the run's proposals,
ESS / N = (sum_k w_k)^2 / (N sum_k w_k^2) (see :func:`lqcdflow.flows.train.ess_fraction`).
"""

from dataclasses import dataclass

import numpy as np
import torch

from lqcdflow.flows.action import phi4_action
from lqcdflow.flows.reduce import allreduce_sum
from lqcdflow.flows.train import ess_fraction
from lqcdflow.rng import CounterRNG

# Philox stream of the accept/reject uniforms; lqcdflow.rng uses 1-3, the flow prior 16.
STREAM_NMCMC = 17


@dataclass
class ChainState:
    """The chain's configuration (this rank's block), its log w, M and S, and the index of the
    next proposal."""

    phi: torch.Tensor
    log_weight: float
    magnetisation: float
    action: float
    next_proposal: int


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


def _proposals(flow, lattice, m2, lam, draw, start, batch):
    """Proposals start .. start + batch - 1: (phi, log w, M, S) with the scalars as float64
    NumPy arrays, identical on every rank."""
    with torch.no_grad():
        phi, logq = flow.sample(batch, draw, start)
        action = phi4_action(phi, lattice, m2, lam)
        mag = allreduce_sum(phi.flatten(1).sum(dim=1), lattice.comm)
    as_np = (lambda t: t.detach().cpu().to(torch.float64).numpy())
    return phi, as_np(-action - logq), as_np(mag), as_np(action)


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
    rng = CounterRNG(seed)
    if state is None:
        phi, logw, mag, act = _proposals(flow, lattice, m2, lam, draw, 0, 1)
        state = ChainState(phi[0], float(logw[0]), float(mag[0]), float(act[0]), 1)
    first = state.next_proposal
    mags, acts = np.empty(n_steps), np.empty(n_steps)
    accepted = np.zeros(n_steps, dtype=bool)
    all_logw = np.empty(n_steps)
    done = 0
    while done < n_steps:
        count = min(batch, n_steps - done)
        phi, logw, mag, act = _proposals(flow, lattice, m2, lam, draw, first + done, count)
        all_logw[done:done + count] = logw
        keep = None
        indices = np.arange(first + done, first + done + count, dtype=np.uint64)
        log_u = np.log(rng.uniform(indices, draw, STREAM_NMCMC))
        for b in range(count):
            if log_u[b] < logw[b] - state.log_weight:
                accepted[done + b] = True
                state.log_weight, state.magnetisation, state.action = logw[b], mag[b], act[b]
                keep = b
            mags[done + b], acts[done + b] = state.magnetisation, state.action
        if keep is not None:
            state.phi = phi[keep].clone()
        done += count
    state.next_proposal = first + n_steps
    result = NMCMCResult(mags, np.abs(mags), mags * mags, acts, accepted,
                         float(accepted.mean()), _longest_run(~accepted),
                         ess_fraction(torch.from_numpy(all_logw)))
    return result, state
