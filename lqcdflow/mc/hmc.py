"""Hybrid Monte Carlo (Duane, Kennedy, Pendleton, Roweth, Phys. Lett. B 195 (1987) 216).

One trajectory from phi:
  1. draw momenta pi_x ~ N(0, 1) per global site (counter-based, draw = trajectory number);
  2. integrate Hamilton's equations for H = sum_x pi_x^2 / 2 + S[phi] with a symplectic,
     reversible scheme to (phi', pi');
  3. accept phi' with probability min(1, exp(-Delta H)), Delta H = H(phi', pi') - H(phi, pi),
     using one uniform number drawn identically on every rank.
Delta H is the reproducible global sum of the per-site differences of the Hamiltonian density,
so the decision, and hence the chain, is the same on any number of ranks.

The sampler holds only settings; the chain state is a separate object it takes and returns.
"""

import math
from dataclasses import dataclass

from lqcdflow.mc.integrators import integrate
from lqcdflow.rng import STREAM_ACCEPT, STREAM_HOT_START, STREAM_MOMENTA, CounterRNG


@dataclass
class ChainState:
    """Everything that changes along a Markov chain.

    Attributes
    ----------
    phi : array
        The local sub-lattice of the current configuration.
    trajectory : int
        Trajectories done so far (the next one has draw number trajectory + 1).
    accepted : int
        Accepted trajectories so far.
    """

    phi: object
    trajectory: int = 0
    accepted: int = 0


@dataclass(frozen=True)
class TrajectoryInfo:
    """What one trajectory did: its number, Delta H and the Metropolis decision."""

    trajectory: int
    delta_H: float
    accepted: bool


def initial_state(lattice, rng: CounterRNG, start="cold"):
    """A chain state at trajectory 0: phi = 0 ("cold") or phi_x ~ N(0, 1) per site ("hot")."""
    if start == "cold":
        return ChainState(lattice.zeros())
    if start == "hot":
        phi = rng.normal(lattice.site_index, 0, STREAM_HOT_START, lattice.xp)
        return ChainState(phi.astype(lattice.backend.dtype))
    raise ValueError(f"start must be 'cold' or 'hot', got {start!r}")


@dataclass(frozen=True)
class HMC:
    """HMC sampler settings.

    Parameters
    ----------
    action : object with ``lattice``, ``density(phi)`` and ``force(phi, out)``
    scheme : lqcdflow.mc.integrators.Scheme
    n_steps : int
        MD steps per trajectory.
    trajectory_length : float
        tau; the step size is eps = tau / n_steps.
    rng : CounterRNG
    """

    action: object
    scheme: object
    n_steps: int
    trajectory_length: float
    rng: CounterRNG

    @property
    def step_size(self):
        return self.trajectory_length / self.n_steps

    def momenta(self, draw):
        """Gaussian momenta of trajectory ``draw`` on the local sub-lattice."""
        lat = self.action.lattice
        pi = self.rng.normal(lat.site_index, draw, STREAM_MOMENTA, lat.xp)
        return pi.astype(lat.backend.dtype)

    def hamiltonian_density(self, phi, pi):
        """h_x = pi_x^2 / 2 + s_x, with H = sum_x h_x."""
        return 0.5 * pi * pi + self.action.density(phi)

    def molecular_dynamics(self, phi, pi):
        """Integrate (phi, pi) along one trajectory; returns new arrays, inputs untouched."""
        phi, pi = phi.copy(), pi.copy()
        integrate(phi, pi, self.action.force, self.scheme, self.n_steps, self.step_size,
                  self.action.lattice.xp)
        return phi, pi

    def step(self, state: ChainState):
        """One HMC trajectory. Returns (new state, TrajectoryInfo)."""
        draw = state.trajectory + 1
        pi = self.momenta(draw)
        h_start = self.hamiltonian_density(state.phi, pi)
        phi_end, pi_end = self.molecular_dynamics(state.phi, pi)
        h_end = self.hamiltonian_density(phi_end, pi_end)
        delta_h = self.action.lattice.sum(h_end - h_start)
        u = self.rng.uniform_scalar(draw, STREAM_ACCEPT)
        # NaN or +inf Delta H rejects; exp is only evaluated where it cannot overflow.
        accepted = delta_h <= 0.0 or u < math.exp(-delta_h)
        phi = phi_end if accepted else state.phi
        return (ChainState(phi, draw, state.accepted + accepted),
                TrajectoryInfo(draw, delta_h, accepted))
