"""Flow sampling one configuration at a time: the independence Metropolis chain of
:func:`lqcdflow.flows.nmcmc.nmcmc` as a sampler of the production runner (:mod:`lqcdflow.runner`).

Step t (t = 1, 2, ...) proposes phi'_t, sample t of draw ``draw`` of the flow (a fresh chain
starts in sample 0), and accepts it when

    log u_t < log w(phi'_t) - log w(phi),   log w = -S - log q,
    u_t = CounterRNG(seed).uniform([t], draw, STREAM_NMCMC),

the proposals and decisions of :func:`~lqcdflow.flows.nmcmc.nmcmc` (same seed and draw), so
the chain is exact for p ~ exp(-S). Proposals are generated ``batch`` at a time in blocks
aligned to multiples of ``batch`` (t in [j batch, (j + 1) batch)), so a chain continued from a
checkpoint evaluates exactly the blocks of the uninterrupted one: the same bits.

The step reports Delta H = log w(phi) - log w(phi'_t), so that the acceptance probability is
min(1, exp(-Delta H)) as in HMC and, at equilibrium, <exp(-Delta H)> = 1 as well
(E_q[w] E_p[1/w] = Z (1/Z)). Over the whole chain the state keeps the acceptance, the longest
run of rejections and the effective sample size per proposal of the importance weights,

    ESS / N = (sum_t w_t)^2 / (N sum_t w_t^2),   t = 1 .. N,

from running log-sums (log sum_t w_t, log sum_t w_t^2), so that it covers restarts.
"""

import hashlib
import math
from dataclasses import dataclass, replace

import numpy as np

from lqcdflow.flows.nmcmc import STREAM_NMCMC, _proposals
from lqcdflow.io.checksum import array_sha256
from lqcdflow.mc.hmc import TrajectoryInfo
from lqcdflow.rng import CounterRNG

# Checkpoint attributes of the state beyond the field, trajectory and acceptance count.
_STATE_ATTRS = ("log_weight", "log_sum_w", "log_sum_w2", "rejection_run",
                "longest_rejection_run")


@dataclass
class FlowChainState:
    """Everything that changes along a flow-sampling chain.

    Attributes
    ----------
    phi : array
        The local sub-lattice of the current configuration (a lattice backend array).
    trajectory : int
        Proposals made so far; the next is proposal trajectory + 1.
    accepted : int
        Accepted proposals so far.
    log_weight : float
        log w of the current configuration.
    log_sum_w, log_sum_w2 : float
        log sum_t w_t and log sum_t w_t^2 over proposals 1 .. trajectory (-inf before any).
    rejection_run, longest_rejection_run : int
        Rejections since the last acceptance, and the most in a row so far.
    """

    phi: object
    trajectory: int
    accepted: int
    log_weight: float
    log_sum_w: float = -math.inf
    log_sum_w2: float = -math.inf
    rejection_run: int = 0
    longest_rejection_run: int = 0

    @property
    def ess_fraction(self):
        """ESS / N of the importance weights of proposals 1 .. N (N = trajectory)."""
        return math.exp(2 * self.log_sum_w - self.log_sum_w2) / self.trajectory


class IndependenceMetropolis:
    """Independence Metropolis sampler with a flow as proposal (settings only).

    Parameters
    ----------
    flow : Flow
        Or any object with ``sample(batch, draw, start) -> (phi, log q)`` and ``state_dict()``.
    lattice : lqcdflow.parallel.Lattice
        Its backend holds the chain's fields (and ``lattice.xp`` converts the proposals).
    m2, lam : float
        Standard-form couplings of the target.
    batch : int
        Proposals per flow evaluation (does not change the chain).
    seed : int
        Key of the accept/reject uniforms.
    draw : int
        Draw number of the proposals; keep it apart from the training draws (step numbers).
    """

    def __init__(self, flow, lattice, m2, lam, batch, seed, draw):
        self.flow, self.lattice, self.m2, self.lam = flow, lattice, m2, lam
        self.batch, self.rng, self.draw = batch, CounterRNG(seed), draw
        self._block = None  # (first proposal, phi, log w, log u) of the cached block

    def _proposal(self, k):
        """(phi'_k as a tensor, log w(phi'_k), log u_k), from the cached block of k."""
        start = k - k % self.batch
        if self._block is None or self._block[0] != start:
            phi, logw, _, _ = _proposals(self.flow, self.lattice, self.m2, self.lam, self.draw,
                                         start, self.batch)
            indices = np.arange(start, start + self.batch, dtype=np.uint64)
            log_u = np.log(self.rng.uniform(indices, self.draw, STREAM_NMCMC))
            self._block = (start, phi, logw, log_u)
        _, phi, logw, log_u = self._block
        return phi[k - start], float(logw[k - start]), float(log_u[k - start])

    def _field(self, tensor):
        """A proposal as a lattice backend array (a copy: the block is not kept alive)."""
        return self.lattice.xp.array(tensor.detach().cpu().numpy())

    def initial_state(self):
        """The chain in proposal 0, before any step."""
        phi, logw, _ = self._proposal(0)
        return FlowChainState(self._field(phi), 0, 0, logw)

    def step(self, state):
        """Propose and accept or reject once. Returns (new state, TrajectoryInfo)."""
        t = state.trajectory + 1
        phi, logw, log_u = self._proposal(t)
        log_ratio = logw - state.log_weight
        accepted = bool(log_u < log_ratio)  # NaN rejects
        run = 0 if accepted else state.rejection_run + 1
        new = replace(state, trajectory=t, accepted=state.accepted + accepted,
                      log_sum_w=float(np.logaddexp(state.log_sum_w, logw)),
                      log_sum_w2=float(np.logaddexp(state.log_sum_w2, 2 * logw)),
                      rejection_run=run,
                      longest_rejection_run=max(run, state.longest_rejection_run))
        if accepted:
            new.phi, new.log_weight = self._field(phi), logw
        return new, TrajectoryInfo(t, -log_ratio, accepted)

    def state_attrs(self, state):
        """The state beyond (phi, trajectory, accepted) as checkpoint attributes."""
        return {f"nmcmc.{name}": getattr(state, name) for name in _STATE_ATTRS}

    def restore(self, phi, attrs):
        """The state of a checkpoint: its field and attributes (see :meth:`state_attrs`)."""
        get = (lambda name, kind: kind(attrs[f"nmcmc.{name}"]))
        return FlowChainState(phi, int(attrs["trajectory"]), int(attrs["accepted"]),
                              get("log_weight", float), get("log_sum_w", float),
                              get("log_sum_w2", float), get("rejection_run", int),
                              get("longest_rejection_run", int))

    def identity(self):
        """What a checkpoint of this chain must agree with: the flow's parameters."""
        return {"nmcmc.flow_sha256": parameters_sha256(self.flow)}

    def describe(self):
        n = sum(p.numel() for p in self.flow.parameters())
        return (f"independence Metropolis with a flow of {n} parameters, "
                f"{self.batch} proposals per flow evaluation")


def parameters_sha256(module):
    """SHA-256 (hex) of a module's state dict: names, dtypes, shapes and values."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(array_sha256(tensor.detach().cpu().numpy()).encode())
    return digest.hexdigest()

