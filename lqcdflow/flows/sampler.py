"""Independence Metropolis with a flow as proposal: the one implementation of the chain, used
one step at a time by the production runner (``lqcdflow sample``, :mod:`lqcdflow.runner`) and
for runs of n steps by :func:`lqcdflow.flows.nmcmc.nmcmc`.

Proposal k (k = 0, 1, ...) is sample k of draw ``draw`` of the flow, phi'_k ~ q, a pure
function of (prior seed, draw, k), whatever the batch size and the process grid. With

    log w(phi) = -S(phi) - log q(phi),

a fresh chain starts in proposal 0, and step t (t = 1, 2, ...) accepts proposal t when

    log u_t < log w(phi'_t) - log w(phi),   u_t = CounterRNG(seed).uniform([t], draw, STREAM_NMCMC),

phi the chain's configuration. That is min(1, w(phi'_t) / w(phi)), which satisfies detailed
balance with respect to p(phi) ~ exp(-S(phi)) for any q that is positive wherever p is (exactly,
given the exact log q). S is the target theory's action (the formula its Markov chains use,
evaluated on a :class:`~lqcdflow.flows.torch_lattice.TorchLattice`). u_t depends on (seed,
draw, t) only; the proposals, S and log q are the same bits on every rank, process grid and
batch size (see :mod:`lqcdflow.flows.layers`), so every decomposition takes the same decisions
on the same configurations: the chain is bitwise that of one process.

Proposals are generated ``batch`` at a time in blocks aligned to multiples of ``batch``
(k in [j batch, (j + 1) batch)), so a chain continued from a checkpoint evaluates exactly the
blocks of the uninterrupted one: the same bits.

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
import torch

from lqcdflow.io.checksum import array_sha256
from lqcdflow.mc.hmc import HMC_RECORD, TrajectoryInfo
from lqcdflow.rng import CounterRNG

# Philox stream of the accept/reject uniforms; lqcdflow.rng uses 1-3, the flow prior 16.
STREAM_NMCMC = 17

# Checkpoint attributes of the state beyond the field, trajectory and acceptance count.
_STATE_ATTRS = ("log_weight", "log_sum_w", "log_sum_w2", "rejection_run",
                "longest_rejection_run")


@dataclass
class ChainState:
    """Everything that changes along a flow-sampling chain.

    Attributes
    ----------
    field : array
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

    field: object
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


@dataclass(frozen=True)
class Proposal:
    """Proposal k: this rank's block of phi'_k (a tensor), and, the same on every rank,
    log w(phi'_k), the log u_k it is judged with and the target's ``sum_observables`` of
    phi'_k ({name: float})."""

    phi: torch.Tensor
    log_weight: float
    log_u: float
    observables: dict


class IndependenceMetropolis:
    """Independence Metropolis sampler with a flow as proposal (settings only; the chain's
    state is a :class:`ChainState` passed in and returned).

    Parameters
    ----------
    flow : Flow
        Or any object with ``sample(batch, draw, start) -> (phi, log q)``; ``state_dict()``
        and ``parameters()`` for :meth:`identity` and :meth:`describe`.
    lattice : lqcdflow.parallel.Lattice
        Its backend holds the chain's fields (and ``lattice.xp`` converts the proposals).
    target : lqcdflow.theories.base.Theory
        The target theory, built on ``TorchLattice(lattice)``: S = ``target.action(phi)``.
    batch : int
        Proposals per flow evaluation (does not change the chain).
    seed : int
        Key of the accept/reject uniforms.
    draw : int
        Draw number of the proposals; keep it apart from the training draws (step numbers).
    last : int, optional
        The last proposal a run of known length will ask for: the block holding it ends there
        instead of evaluating proposals nobody uses. The runner leaves it out, since a chain
        may be extended later and must then meet the blocks of the uninterrupted chain.
    """

    record = HMC_RECORD  # the /mc series: the decision and Delta H = -log(w'/w)
    updates_per_step = 1

    def __init__(self, flow, lattice, target, batch, seed, draw, last=None):
        self.flow, self.lattice, self.target = flow, lattice, target
        self.batch, self.rng, self.draw, self.last = batch, CounterRNG(seed), draw, last
        self._block = None  # (first proposal, phi, then lists of log w, M, S, log u)

    def proposal(self, k):
        """Proposal k (collective when its block is not the cached one)."""
        start = k - k % self.batch
        if self._block is None or self._block[0] != start:
            count = self.batch if self.last is None else min(self.batch, self.last + 1 - start)
            with torch.no_grad():
                phi, logq = self.flow.sample(count, self.draw, start)
                observables = {name: _numpy(value).tolist()
                               for name, value in self.target.sum_observables(phi).items()}
            log_w = (-np.asarray(observables["action"]) - _numpy(logq)).tolist()
            indices = np.arange(start, start + count, dtype=np.uint64)
            log_u = np.log(self.rng.uniform(indices, self.draw, STREAM_NMCMC))
            self._block = (start, phi, log_w, log_u.tolist(), observables)
        _, phi, log_w, log_u, observables = self._block
        i = k - start
        return Proposal(phi[i], log_w[i], log_u[i],
                        {name: values[i] for name, values in observables.items()})

    def _field(self, tensor):
        """A proposal as a lattice backend array (a copy: the block is not kept alive)."""
        return self.lattice.xp.array(tensor.detach().cpu().numpy())

    def initial_state(self):
        """The chain in proposal 0, before any step."""
        first = self.proposal(0)
        return ChainState(self._field(first.phi), 0, 0, first.log_weight)

    def step(self, state):
        """Propose and accept or reject once. Returns (new state, TrajectoryInfo)."""
        t = state.trajectory + 1
        new = self.proposal(t)
        log_ratio = new.log_weight - state.log_weight
        accepted = bool(new.log_u < log_ratio)  # NaN rejects
        run = 0 if accepted else state.rejection_run + 1
        state = replace(state, trajectory=t, accepted=state.accepted + accepted,
                        log_sum_w=float(np.logaddexp(state.log_sum_w, new.log_weight)),
                        log_sum_w2=float(np.logaddexp(state.log_sum_w2, 2 * new.log_weight)),
                        rejection_run=run,
                        longest_rejection_run=max(run, state.longest_rejection_run))
        if accepted:
            state.field, state.log_weight = self._field(new.phi), new.log_weight
        return state, TrajectoryInfo(t, -log_ratio, accepted)

    def state_attrs(self, state):
        """The state beyond (field, trajectory, accepted) as checkpoint attributes."""
        return {f"nmcmc.{name}": getattr(state, name) for name in _STATE_ATTRS}

    def restore(self, field, attrs):
        """The state of a checkpoint: its field and attributes (see :meth:`state_attrs`)."""
        get = (lambda name, kind: kind(attrs[f"nmcmc.{name}"]))
        return ChainState(field, int(attrs["trajectory"]), int(attrs["accepted"]),
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


def _numpy(tensor):
    """A tensor of per-sample scalars as a float64 NumPy array."""
    return tensor.detach().cpu().to(torch.float64).numpy()


def parameters_sha256(module):
    """SHA-256 (hex) of a module's state dict: names, dtypes, shapes and values."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(array_sha256(tensor.detach().cpu().numpy()).encode())
    return digest.hexdigest()
