"""Compiled (Numba) molecular dynamics of U(1) gauge theory on CPUs, bitwise equal to the
NumPy path.

A momentum update P(c) is two passes over the sites instead of the array path's dozens
(U1.force: per plane two shifts, a sine, two more shifts, strided updates):

1. the sines of the plaquette angles, per site and plane (mu, nu), mu < nu, in their order:

       s_{mu nu}(x) = sin( ((theta_mu(x) + theta_nu(x + mu)) - theta_mu(x + nu)) - theta_nu(x) ),

   the links at x + mu and x + nu across a split direction from the faces the upper
   neighbours send;
2. the force and the update of the momenta, f = 0 and then for the planes in their order

       f_mu += s_{mu nu}(x) - s_{mu nu}(x - nu),   f_nu -= s_{mu nu}(x) - s_{mu nu}(x - mu),

   and pi_mu(x) <- pi_mu(x) + (f_mu beta) (-c),

   the sines at x - nu across a split direction from the faces the lower neighbours send.

These are the operations of U1.force and axpy in their order (the rules:
lqcdflow.kernels.compiled), with the sine of the C library, which NumPy also uses for float64
on the CPUs seen so far; :func:`unavailable` checks that on the machine it runs on, and float32
(where NumPy has its own vectorised sine) is not offered.

Local Metropolis updates (lqcdflow.mc.local) of the links of one direction and parity are one
pass over their sites (lqcdflow.kernels.compiled.metropolis_hits with U(1)'s local action
and proposal), from the staple sums of the array path, with the C library's cosine and sine.
"""

import math

import numba
import numpy as np

from lqcdflow.kernels.compiled import CompiledLocal, CompiledMD, add_scaled, block_range, \
    field_update, metropolis_hits, numpy_trigonometry_differs
from lqcdflow.kernels.jit import kernel
from lqcdflow.theories.u1 import TWO_PI

# The sites are cut into this many blocks for the threads (a parallel loop over single sites
# schedules too finely: it ran 2.4x slower than a serial one on one thread).
BLOCKS = 64


@kernel(inline="always")
def _sines_of(theta, halo, up, sines, first, stop):
    """Pass 1 (module docstring) on sites first to stop - 1: sines[i * P + p] = s_p(x_i), p the
    planes in order; up[mu, i] is the site x_i + mu (>= V: site - V of ``halo``). Plane by
    plane, so that each inner loop has fixed directions."""
    ndim, volume = up.shape[0], up.shape[1]
    planes = ndim * (ndim - 1) // 2
    p = 0
    for mu in range(ndim):
        for nu in range(mu + 1, ndim):
            for i in range(first, stop):
                j, k = up[mu, i], up[nu, i]
                nu_up = theta[j * ndim + nu] if j < volume else halo[(j - volume) * ndim + nu]
                mu_up = theta[k * ndim + mu] if k < volume else halo[(k - volume) * ndim + mu]
                angle = ((theta[i * ndim + mu] + nu_up) - mu_up) - theta[i * ndim + nu]
                sines[i * planes + p] = math.sin(angle)
            p += 1


@kernel(inline="always")
def _update_of(sines, halo, down, pi, beta, minus_c, first, stop):
    """Pass 2 (module docstring) on sites first to stop - 1: pi <- pi + (f beta) (-c), f from
    the sines at x and x - nu; down[mu, i] is the site x_i - mu (>= V: site - V of
    ``halo``). Plane by plane into the sites' forces, which keeps each link's terms in plane
    order."""
    ndim, volume = down.shape[0], down.shape[1]
    planes = ndim * (ndim - 1) // 2
    force = np.zeros((ndim, stop - first))  # +0.0, as the array path's force starts
    p = 0
    for mu in range(ndim):
        for nu in range(mu + 1, ndim):
            f_mu, f_nu = force[mu], force[nu]
            for i in range(first, stop):
                s = sines[i * planes + p]
                j, k = down[nu, i], down[mu, i]
                below_nu = sines[j * planes + p] if j < volume \
                    else halo[(j - volume) * planes + p]
                below_mu = sines[k * planes + p] if k < volume \
                    else halo[(k - volume) * planes + p]
                f_mu[i - first] = f_mu[i - first] + (s - below_nu)
                f_nu[i - first] = f_nu[i - first] - (s - below_mu)
            p += 1
    for mu in range(ndim):
        f_mu = force[mu]
        for i in range(first, stop):
            pi[i * ndim + mu] = pi[i * ndim + mu] + (f_mu[i - first] * beta) * minus_c


@kernel(parallel=True)
def _plaquette_sines(theta, halo, up, sines):
    """Pass 1 (:func:`_sines_of`), the threads taking blocks of sites."""
    volume = up.shape[1]
    for block in numba.prange(BLOCKS):
        first, stop = block_range(block, BLOCKS, volume)
        _sines_of(theta, halo, up, sines, first, stop)


@kernel(parallel=True)
def _momentum_update(sines, halo, down, pi, beta, minus_c):
    """Pass 2 (:func:`_update_of`), the threads taking blocks of sites."""
    volume = down.shape[1]
    for block in numba.prange(BLOCKS):
        first, stop = block_range(block, BLOCKS, volume)
        _update_of(sines, halo, down, pi, beta, minus_c, first, stop)


@kernel()
def _trajectory(theta, pi, sines, up, down, kinds, coefficients, beta):
    """A whole trajectory without split directions: update k is P(coefficients[k, 0]) where
    kinds[k] == 0, else Q(coefficients[k, 0]) (lqcdflow.kernels.fused.FusedMD._updates)."""
    for k in range(kinds.shape[0]):
        if kinds[k] == 0:
            _plaquette_sines(theta, theta[:0], up, sines)
            _momentum_update(sines, sines[:0], down, pi, beta, -coefficients[k, 0])
        else:
            field_update(theta, pi, coefficients[k, 0])


@kernel(parallel=True)
def _trajectory_one_thread(theta, pi, sines, up, down, kinds, coefficients, beta):
    """:func:`_trajectory` in one thread, inside one parallel region (Numba's parallel runtime
    entered once, see lqcdflow.kernels.phi4_numba._trajectory_one_thread)."""
    volume = up.shape[1]
    for _ in numba.prange(1):
        for k in range(kinds.shape[0]):
            if kinds[k] == 0:
                _sines_of(theta, theta[:0], up, sines, 0, volume)
                for block in range(BLOCKS):  # each block's forces stay in the caches
                    first, stop = block_range(block, BLOCKS, volume)
                    _update_of(sines, sines[:0], down, pi, beta, -coefficients[k, 0], first,
                               stop)
            else:
                add_scaled(theta, pi, coefficients[k, 0])


def unavailable(theory):
    """Why the compiled U(1) kernels would not give the array path's bits here, or None: they
    need float64, and NumPy's sine and cosine must be the C library's."""
    if theory.lattice.backend.dtype != np.float64:
        return "the U(1) kernels need [run] dtype = 'float64' (NumPy's float32 sine is its own)"
    return numpy_trigonometry_differs()


def make(theory, threads):
    """The compiled kernels of ``theory`` with ``threads`` threads (lqcdflow.kernels.select)."""
    return U1Compiled(theory, threads)


class U1Compiled(CompiledMD):
    """The molecular dynamics of a :class:`lqcdflow.theories.u1.U1` theory with the compiled
    kernels of this module (lqcdflow.kernels.compiled.CompiledMD)."""

    def __init__(self, theory, threads=1):
        super().__init__(theory, threads)
        planes = theory.lattice.ndim * (theory.lattice.ndim - 1) // 2
        self._sines = np.empty(tuple(theory.lattice.local_shape) + (planes,))
        self._up, self._down = self.neighbour_table(1), self.neighbour_table(-1)

    def whole_trajectory(self, field, pi, kinds, terms, coefficients):
        """CompiledMD.whole_trajectory: :func:`_trajectory_one_thread` or, with threads,
        :func:`_trajectory`."""
        trajectory = _trajectory_one_thread if self.threads == 1 else _trajectory
        trajectory(field.reshape(-1), pi.reshape(-1), self._sines.reshape(-1), self._up,
                   self._down, kinds, coefficients, np.float64(self.theory.beta))
        return True

    def momentum_update(self, field, pi, term, c):
        """P(c) (module docstring): the links' upper faces, the sines, their lower faces, the
        update."""
        halo, _ = self.halo(field, (1,))
        _plaquette_sines(field.reshape(-1), halo, self._up, self._sines.reshape(-1))
        halo, _ = self.halo(self._sines, (-1,))
        _momentum_update(self._sines.reshape(-1), halo, self._down, pi.reshape(-1),
                         np.float64(self.theory.beta), np.float64(-c))


@kernel(inline="always")
def _local_action(theta, staples, constants):
    """U1.local_action: -beta (cos theta Re A - sin theta Im A), constants (-beta, 2 pi)."""
    minus_beta, _ = constants
    return minus_beta * (math.cos(theta) * staples.real - math.sin(theta) * staples.imag)


@kernel(inline="always")
def _propose(theta, u, width, constants):
    """U1.propose: wrap(theta + width (2u - 1)), wrap as lqcdflow.theories.u1.wrap."""
    _, two_pi = constants
    angle = theta + width * (2.0 * u - 1.0)
    r = angle - two_pi * math.floor((angle + math.pi) / two_pi)
    if r < -math.pi:
        r = r + two_pi
    if r >= math.pi:
        r = r - two_pi
    return r


@kernel(parallel=True)
def _metropolis(theta, mu, ndim, staples, sites, dofs, sweep, k0, k1, hits, width, constants,
                changed, delta_s):
    """The Metropolis hits (compiled.metropolis_hits) of the links theta_mu at the flat
    ``sites`` of a group."""
    for k in numba.prange(sites.size):
        i = sites[k]
        count, change = metropolis_hits(theta, i * ndim + mu, staples[i], constants,
                                        np.uint64(dofs[k]), sweep, k0, k1, hits, width,
                                        _local_action, _propose)
        changed[i], delta_s[i] = changed[i] + count, delta_s[i] + change


def make_metropolis(theory, threads, rng, hits, width):
    """The compiled Metropolis updates of ``theory`` (lqcdflow.kernels.select.choose)."""
    return U1Metropolis(theory, threads, "metropolis", rng, hits, width)


class U1Metropolis(CompiledLocal):
    """Metropolis updates of the links of a :class:`lqcdflow.theories.u1.U1` theory with
    :func:`_metropolis` (lqcdflow.kernels.compiled.CompiledLocal). (The heatbath has no
    compiled kernel: its von Mises draws take NumPy's arccos, angle and complex absolute
    value, which are not the C library's.)"""

    def update_sites(self, theta, component, staples, sites, dofs, sweep, changed, delta_s):
        (mu,) = component
        _metropolis(theta, mu, self.theory.lattice.ndim, staples, sites, dofs, sweep, *self.key,
                    self.hits, np.float64(self.width), (np.float64(-self.theory.beta), TWO_PI),
                    changed, delta_s)
