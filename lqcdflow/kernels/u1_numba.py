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
"""

import math

import numba
import numpy as np

from lqcdflow.kernels.compiled import CompiledMD
from lqcdflow.kernels.jit import kernel

# The sites are cut into this many blocks for the threads (a parallel loop over single sites
# schedules too finely: it ran 2.4x slower than a serial one on one thread).
BLOCKS = 64


@kernel(parallel=True)
def _plaquette_sines(theta, halo, up, sines):
    """Pass 1 (module docstring): sines[i * P + p] = s_p(x_i), p the planes in order; up[mu, i]
    is the site x_i + mu (>= V: site - V of ``halo``). Plane by plane over a block of sites, so
    that each inner loop has fixed directions."""
    ndim, volume = up.shape[0], up.shape[1]
    planes = ndim * (ndim - 1) // 2
    for block in numba.prange(BLOCKS):  # threads take blocks of sites
        first, stop = block * volume // BLOCKS, (block + 1) * volume // BLOCKS
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


@kernel(parallel=True)
def _momentum_update(sines, halo, down, pi, beta, minus_c):
    """Pass 2 (module docstring): pi <- pi + (f beta) (-c), f from the sines at x and x - nu;
    down[mu, i] is the site x_i - mu (>= V: site - V of ``halo``). Plane by plane over a block
    of sites into the block's forces, which keeps each link's terms in plane order."""
    ndim, volume = down.shape[0], down.shape[1]
    planes = ndim * (ndim - 1) // 2
    for block in numba.prange(BLOCKS):
        first, stop = block * volume // BLOCKS, (block + 1) * volume // BLOCKS
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


@kernel()
def _sines(angles):
    out = np.empty_like(angles)
    for i in range(angles.size):
        out[i] = math.sin(angles[i])
    return out


def unavailable(theory):
    """Why the compiled U(1) kernels would not give the array path's bits here, or None: they
    need float64, and NumPy's sine must be the C library's (checked on angles of every size
    an MD trajectory meets)."""
    if theory.lattice.backend.dtype != np.float64:
        return "the U(1) kernels need [run] dtype = 'float64' (NumPy's float32 sine is its own)"
    angles = np.random.default_rng(0).uniform(-4 * math.pi, 4 * math.pi, 4096)
    angles = np.concatenate([angles, [0.0, -0.0, math.pi, -math.pi, 1e-300, 1e300]])
    if not np.array_equal(np.sin(angles), _sines(angles)):
        return "NumPy's sine differs from the C library's on this machine"
    return None


# Sites per rank from which the kernels beat the array path (tools/bench_md.py, one thread:
# 0.87x on 64^2, 1.3x on 16^4): below, a pass is too short for the time of entering it.
FASTER_FROM = 1 << 14


def faster(theory):
    """Whether "auto" takes these kernels: from FASTER_FROM sites per rank on."""
    return theory.lattice.local_volume >= FASTER_FROM


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

    def momentum_update(self, field, pi, term, c):
        """P(c) (module docstring): the links' upper faces, the sines, their lower faces, the
        update."""
        halo, _ = self.halo(field, (1,))
        _plaquette_sines(field.reshape(-1), halo, self._up, self._sines.reshape(-1))
        halo, _ = self.halo(self._sines, (-1,))
        _momentum_update(self._sines.reshape(-1), halo, self._down, pi.reshape(-1),
                         np.float64(self.theory.beta), np.float64(-c))
