"""The Ising model on a periodic D-dimensional lattice: spins s_x = +1 or -1 with

    S[s] = beta E[s],   E[s] = -sum_{x,mu} s_x s_{x+mu},

the lambda -> infinity limit of phi^4 in the hopping form at beta = 2 kappa (there |phi_x| = 1).
It has no molecular dynamics; it is sampled by local updates (lqcdflow.mc.local): Metropolis
(a spin flip, accepted with min(1, exp(-Delta S)), Delta S = 2 beta s_x h_x) and heatbath
(s_x = +1 with probability 1 / (1 + exp(-2 beta h_x))), where h_x = sum_mu (s_{x+mu} +
s_{x-mu}) is the sum of the 2D neighbours. In 2D the critical coupling is
beta_c = log(1 + sqrt 2) / 2 = 0.44069 (Onsager).
"""

import math

from lqcdflow.rng import STREAM_HOT_START
from lqcdflow.schema import Key
from lqcdflow.theories.base import FieldSpec, Observable, Theory
from lqcdflow.theories.phi4 import magnetisation_quantities

OBSERVABLES = (
    Observable("action", (), "S = beta E, the action"),
    Observable("energy", (), "E = -sum_{x,mu} s_x s_{x+mu}"),
    Observable("m", (), "M = sum_x s_x, the magnetisation"),
    Observable("abs_m", (), "|M|"),
    Observable("m2", (), "M^2"),
    Observable("m4", (), "M^4"),
)


class Ising(Theory):
    """The Ising model on a domain-decomposed lattice (see the module docstring).

    Parameters
    ----------
    lattice : lqcdflow.parallel.Lattice
    beta : float
        The coupling, >= 0 (ferromagnetic).
    """

    field = FieldSpec("spin", (), description="Ising spin s_x = +1 or -1")
    momentum_shape = ()
    observables = OBSERVABLES

    compiled_kernels = "lqcdflow.kernels.ising_numba"  # lqcdflow.kernels.select

    def __init__(self, lattice, beta):
        super().__init__(lattice)
        self.beta = float(beta)  # a Python float: see Phi4Couplings
        # P(s_x = +1) for h_x = -2D, -2D + 2, ..., 2D, computed once on the host so that the
        # heatbath draws the same spins on every backend
        d = lattice.ndim
        self.up_probability = lattice.xp.asarray([1.0 / (1.0 + math.exp(-2.0 * beta * h))
                                                 for h in range(-2 * d, 2 * d + 1, 2)])

    def describe(self):
        return f"Ising: beta = {self.beta:g}"

    def cold_start(self):
        """All spins up."""
        return self.zeros() + 1.0

    def hot_start(self, rng):
        """Each spin up or down with probability 1/2."""
        lat = self.lattice
        u = rng.uniform(lat.site_index, 0, STREAM_HOT_START, lat.xp)
        return lat.xp.where(u < 0.5, -1.0, 1.0).astype(lat.backend.dtype)

    def energy_density(self, s):
        """e_x = -sum_mu s_x s_{x+mu} (one forward neighbour per direction)."""
        lat = self.lattice
        out = lat.xp.zeros_like(s)
        for mu in range(lat.ndim):
            out -= s * lat.shift(s, mu, +1)
        return out

    def action_density(self, s):
        return self.beta * self.energy_density(s)

    def force(self, s, out=None):
        raise TypeError("the Ising model has no molecular dynamics: sample it with local "
                        "updates")

    def measure(self, s):
        """Per-configuration observables (see ``observables``), identical on all ranks."""
        lat = self.lattice
        energy = lat.sum(self.energy_density(s))
        m = lat.sum(s)
        return {"action": self.beta * energy, "energy": energy, "m": m, "abs_m": abs(m),
                "m2": m * m, "m4": m**4}

    # ------------------------------------------------------------------ local updates
    local_components = ((),)  # one spin per site

    def local_environment(self, s, component):
        """h_x = sum_mu (s_{x+mu} + s_{x-mu})."""
        return self.lattice.neighbour_sum(s)

    def local_action(self, s, h):
        """The part of S that depends on s_x: -beta s_x h_x."""
        return -self.beta * s * h

    def propose(self, s, u, width):
        """The Metropolis proposal: the flipped spin (``u`` and ``width`` are not needed)."""
        return -s

    def heatbath(self, h, draw):
        """s_x = +1 if u_x < 1 / (1 + exp(-2 beta h_x)), else -1 (u_x of attempt 0)."""
        u, _ = draw(0)
        index = ((h + 2 * self.lattice.ndim) * 0.5).astype(int)
        return self.lattice.xp.where(u < self.up_probability[index], 1.0, -1.0).astype(h.dtype)


# ---------------------------------------------------------------------- run file: [theory]
KEYS = {"beta": Key("float", check=lambda v: v >= 0, allowed="a real number >= 0")}
ALGORITHMS = ("metropolis", "heatbath")  # [sampler] algorithms that sample it


def check(values, given, ndim):
    """Nothing beyond the keys' own checks."""


def make(settings, lattice):
    """The Ising model of the [theory] settings on ``lattice``."""
    return Ising(lattice, settings.beta)


# ---------------------------------------------------------------------- analysis
def quantities(theory, shape, measured, has):
    """The analysis of Ising ensembles: (primary, derived, notes) as for phi^4
    (:func:`lqcdflow.theories.phi4.quantities`), with M = sum_x s_x and E the energy:

    Primary: <E>/V, <|M|>/V, <M^2>/V^2, <M^4>/V^4.
    Derived: chi = <M^2>/V, chi_c = (<M^2> - <|M|>^2)/V, U = <M^4>/<M^2>^2, and the specific
    heat per site C = (<E^2> - <E>^2)/V (in units of beta^2: C_true = beta^2 C).
    """
    V = math.prod(shape)
    e = measured(lambda o: o["energy"] / V)
    primary = [("energy_density", "<E>/V", e)]
    moments, derived = magnetisation_quantities(V, measured)
    e2 = measured(lambda o: (o["energy"] / V) ** 2)
    derived.append(("specific_heat", "C = (<E^2>-<E>^2)/V", V * (e2 - e**2)))
    return primary + moments, derived, []


REQUIRED = ("energy", "abs_m", "m2", "m4")  # series the analysis cannot do without
THERMALIZATION = ("energy", "abs_m")  # series whose transient detects the thermalisation cut
CORRELATOR = False

PLOTS = {
    "history": (("energy", 1, "$E/V$", "energy_density"),
                ("abs_m", 1, "$|M|/V$", "abs_m")),
    "autocorrelation": ("energy_density", "abs_m", "chi_connected", "binder_ratio"),
    "histogram": ("m", 1, "$M/V$"),
}
