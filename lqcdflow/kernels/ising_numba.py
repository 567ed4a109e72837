"""Compiled (Numba) local updates of the Ising model on CPUs, bitwise equal to the NumPy path.

A checkerboard group's sites in one pass (lqcdflow.mc.local), from the neighbour sums h_x of
the array path, with the local action s = (-beta s_x) h_x of Ising.local_action:

    Metropolis  the flipped spin, accepted if Delta s <= 0 or log_exact(u') < -Delta s, for
                each hit (u' the second uniform of the hit's words);
    heatbath    s_x = +1 if u < 1 / (1 + exp(-2 beta h_x)) (the theory's table), else -1, u
                the first uniform of attempt 0.
"""

import numba
import numpy as np

from lqcdflow.kernels import rng_numba
from lqcdflow.kernels.compiled import CompiledLocal, metropolis_hits
from lqcdflow.kernels.jit import kernel
from lqcdflow.rng import STREAM_LOCAL


@kernel(inline="always")
def _local_action(s, h, minus_beta):
    """Ising.local_action: (-beta s_x) h_x."""
    return minus_beta * s * h


@kernel(inline="always")
def _flip(s, u, width, minus_beta):
    """Ising.propose: the flipped spin."""
    return -s


@kernel(parallel=True)
def _metropolis(spins, h, sites, dofs, sweep, k0, k1, hits, minus_beta, changed, delta_s):
    """The Metropolis hits (compiled.metropolis_hits) at the flat ``sites`` of a group."""
    for k in numba.prange(sites.size):
        i = sites[k]
        count, change = metropolis_hits(spins, i, h[i], minus_beta, np.uint64(dofs[k]), sweep,
                                        k0, k1, hits, 0.0, _local_action, _flip)
        changed[i], delta_s[i] = changed[i] + count, delta_s[i] + change


@kernel(parallel=True)
def _heatbath(spins, h, sites, dofs, sweep, stream, k0, k1, up, two_d, minus_beta, changed,
              delta_s):
    """The heatbath draws at the flat ``sites`` of sweep ``sweep``, in place (module
    docstring); up[(h + 2D) / 2] is the probability of +1."""
    for k in numba.prange(sites.size):
        i = sites[k]
        value, environment = spins[i], h[i]
        u, _ = rng_numba.uniforms(np.uint64(dofs[k]), sweep, stream, np.uint64(0), k0, k1)
        new = 1.0 if u < up[int((environment + two_d) * 0.5)] else -1.0
        spins[i] = new
        if spins[i] != value:
            changed[i] = changed[i] + 1.0
        delta_s[i] = delta_s[i] + (_local_action(spins[i], environment, minus_beta)
                                   - _local_action(value, environment, minus_beta))


def make_metropolis(theory, threads, rng, hits, width):
    """The compiled metropolis updates of ``theory`` (lqcdflow.kernels.select.choose)."""
    return IsingLocal(theory, threads, "metropolis", rng, hits, width)


def make_heatbath(theory, threads, rng, hits, width):
    """The compiled heatbath updates of ``theory`` (lqcdflow.kernels.select.choose)."""
    return IsingLocal(theory, threads, "heatbath", rng, hits, width)


class IsingLocal(CompiledLocal):
    """Metropolis or heatbath updates of a :class:`lqcdflow.theories.ising.Ising` theory
    (lqcdflow.kernels.compiled.CompiledLocal)."""

    def update_sites(self, values, component, environment, sites, dofs, sweep, changed,
                     delta_s):
        minus_beta = values.dtype.type(-self.theory.beta)
        if self.algorithm == "heatbath":
            _heatbath(values, environment, sites, dofs, sweep, np.uint64(STREAM_LOCAL),
                      *self.key, self.theory.up_probability,
                      values.dtype.type(2 * self.theory.lattice.ndim),
                      minus_beta, changed, delta_s)
        else:
            _metropolis(values, environment, sites, dofs, sweep, *self.key, self.hits,
                        minus_beta, changed, delta_s)
