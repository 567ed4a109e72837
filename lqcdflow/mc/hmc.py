"""Hybrid Monte Carlo (Duane, Kennedy, Pendleton, Roweth, Phys. Lett. B 195 (1987) 216).

One trajectory from the field U (any theory, see lqcdflow.theories.base):
  1. draw momenta P ~ N(0, 1) per degree of freedom (counter-based, draw = trajectory number);
  2. integrate Hamilton's equations for H = sum_x [k(P_x) + s_x(U)] with a symplectic,
     reversible scheme (possibly nested over the theory's force terms) to (U', P');
  3. accept U' with probability min(1, exp(-Delta H)), Delta H = H(U', P') - H(U, P),
     using one uniform number drawn identically on every rank; an accepted field is then
     mapped back onto its manifold (the theory's ``normalize``).
Delta H is the reproducible global sum of the per-site differences of the Hamiltonian density,
so the decision, and hence the chain, is the same on any number of ranks.

The sampler holds only settings; the chain state is a separate object it takes and returns.
"""

import math
import tracemalloc
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from lqcdflow.kernels.select import ArrayKernels
from lqcdflow.mc.integrators import describe_levels, levels_of
from lqcdflow.rng import STREAM_ACCEPT, CounterRNG


@dataclass
class ChainState:
    """Everything that changes along a Markov chain.

    Attributes
    ----------
    field : array
        The local sub-lattice of the current configuration.
    trajectory : int
        Trajectories done so far (the next one has draw number trajectory + 1).
    accepted : int
        Accepted trajectories so far (local sweeps, lqcdflow.mc.local: site updates that
        changed their site).
    """

    field: object
    trajectory: int = 0
    accepted: int = 0


HMC_RECORD = (("accepted", "|i1"), ("delta_H", "<f8"))  # (name, dtype): the /mc series


@dataclass(frozen=True)
class TrajectoryInfo:
    """What one trajectory did: its number, Delta H and the Metropolis decision (the record
    HMC_RECORD)."""

    trajectory: int
    delta_H: float
    accepted: bool

    def change(self):
        """(label, value) of the change of energy, which must be finite."""
        return "Delta H", self.delta_H


def initial_state(theory, rng: CounterRNG, start="cold"):
    """A chain state at trajectory 0: the theory's cold (ordered) or hot (disordered) start."""
    if start == "cold":
        return ChainState(theory.cold_start())
    if start == "hot":
        return ChainState(theory.hot_start(rng))
    raise ValueError(f"start must be 'cold' or 'hot', got {start!r}")


# Peak bytes per site of one trajectory above the chain's field, measured with
# tools/memory_md.py (float64, omelyan2, 16^4): phi^4 127, U(1) 541, SU(3) 4326; each is above
# 5 (f + m), f and m the field and momentum bytes per site: the lower bound used here.
_TRAJECTORY_WORK = 5


def memory_needed(theory):
    """Bytes per rank an HMC chain of ``theory`` needs at least: the chain's field and one
    trajectory's arrays, V_loc (f + 5 (f + m)) with f and m the bytes per site of the field
    and the momenta, V_loc the sites of the rank."""
    lat = theory.lattice
    real = np.dtype(lat.backend.dtype)
    f = theory.field.dtype(real).itemsize * math.prod(theory.field.site_shape)
    m = real.itemsize * math.prod(theory.momentum_shape)
    return lat.local_volume * (f + _TRAJECTORY_WORK * (f + m))


def trajectory_peak(hmc, state):
    """Bytes one trajectory of ``hmc`` from ``state`` allocates at its peak on this rank, above
    what existed before it (NumPy arrays, seen by ``tracemalloc``): what memory_needed bounds
    besides the field (measured by tools/memory_md.py and the tests)."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    hmc.step(state)
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    return peak


@dataclass(frozen=True)
class HMC:
    """HMC sampler settings.

    Parameters
    ----------
    theory : lqcdflow.theories.base.Theory
    levels : tuple of lqcdflow.mc.integrators.Level
        The integrator, outermost level first (see ``levels_of``).
    trajectory_length : float
        tau; the outermost step size is eps = tau / n_steps of the first level.
    rng : CounterRNG
    kernels : object
        What draws the momenta, ``momenta(rng, draw)``, and integrates the trajectory,
        ``integrate(field, pi, levels, trajectory_length)`` in place (lqcdflow.kernels.select:
        array operations or compiled kernels).
    metropolis : bool
        The Metropolis test at the end of each trajectory (False only for the unadjusted
        Langevin algorithm, lqcdflow.mc.langevin, which is then inexact).
    name : str
        What the log calls the algorithm.
    """

    theory: object
    levels: tuple
    trajectory_length: float
    rng: CounterRNG
    kernels: object
    metropolis: bool = True  # False: accept every trajectory (unadjusted Langevin)
    name: str = "HMC"

    record: ClassVar[tuple] = HMC_RECORD
    updates_per_step: ClassVar[int] = 1  # accept/reject decisions per trajectory

    @classmethod
    def of(cls, theory, scheme, n_steps, trajectory_length, rng, kernels=None):
        """HMC with one ``scheme`` at every level: ``n_steps`` an int for one level of the
        whole force, or a list of steps per force term of the theory (nested); ``kernels``
        from :func:`lqcdflow.kernels.select.md_kernels` (default: array operations)."""
        return cls(theory, levels_of(theory, scheme, n_steps), trajectory_length, rng,
                   kernels or ArrayKernels(theory))

    @property
    def step_size(self):
        return self.trajectory_length / self.levels[0].n_steps

    def momenta(self, draw):
        """Gaussian momenta of trajectory ``draw`` on the local sub-lattice (the kernels'
        draw of the theory's momenta)."""
        return self.kernels.momenta(self.rng, draw)

    def hamiltonian_density(self, field, pi):
        """h_x = k(P_x) + s_x(U), with H = sum_x h_x."""
        return self.theory.kinetic_density(pi) + self.theory.action_density(field)

    def molecular_dynamics(self, field, pi):
        """Integrate (field, pi) along one trajectory; returns new arrays, inputs untouched."""
        field, pi = field.copy(), pi.copy()
        self.kernels.integrate(field, pi, self.levels, self.trajectory_length)
        return field, pi

    def step(self, state: ChainState):
        """One HMC trajectory. Returns (new state, TrajectoryInfo)."""
        draw = state.trajectory + 1
        pi = self.momenta(draw)
        h_start = self.hamiltonian_density(state.field, pi)
        field_end, pi_end = self.molecular_dynamics(state.field, pi)
        h_end = self.hamiltonian_density(field_end, pi_end)
        delta_h = self.theory.lattice.sum(h_end - h_start)
        u = self.rng.uniform_scalar(draw, STREAM_ACCEPT)
        # NaN or +inf Delta H rejects; exp is only evaluated where it cannot overflow.
        accepted = not self.metropolis or delta_h <= 0.0 or u < math.exp(-delta_h)
        field = self.theory.normalize(field_end) if accepted else state.field
        return (ChainState(field, draw, state.accepted + accepted),
                TrajectoryInfo(draw, delta_h, accepted))

    def describe(self):
        test = "" if self.metropolis else "; every trajectory accepted (no Metropolis test)"
        return (describe_levels(self.levels, self.trajectory_length)
                + f"; kernels: {self.kernels.name}" + test)
