"""Compiled (Numba) molecular dynamics of SU(N) gauge theory (N = 2, 3) on CPUs, bitwise equal
to the NumPy path.

The array path (lqcdflow.theories.sun) makes about a hundred array passes per update, each
writing a temporary of the whole lattice. Here an update is one pass over the sites, each
link's matrices in registers or L1:

P(c), the momenta: per site x, the staples of all directions, plane by plane (mu < nu, in
order) and within a plane in the order of SUN.staples,

    A_mu += U_nu(x + mu) R^dagger,              A_nu += U_mu(x + nu) L^dagger,
    A_mu += L(x - nu)^dagger U_nu(x - nu),      A_nu += R(x - mu)^dagger U_mu(x - mu),

    L(y) = U_mu(y) U_nu(y + mu),  R(y) = U_nu(y) U_mu(y + nu)

(each staple the first of its terms, then the others added); then for every mu

    pi_{mu,a}(x) <- pi_{mu,a}(x) + (Im tr(T_a U_mu(x) A_mu(x)) (beta/N)) (-c).

The lower staples L(x - nu)^dagger U_nu(x - nu) are computed again at x rather than shifted:
the same operations on the same operands give the same bits. The links at x +- mu and at the
corners x - nu + mu come from the field padded with one halo layer (Lattice.padded), read
from its parts (lqcdflow.kernels.lanes.split_parts).

Q(c), the links: per link, U <- exp(i c P) U with P = sum_a pi_a T_a, the algebra matrix, the
exponential (SU(2) closed form; SU(3) Cayley-Hamilton with Morningstar-Peardon coefficients,
or the series below C1_SERIES) and the product in the operations of lqcdflow.groups.su_n.

The matrices are handled LANES sites at a time (lqcdflow.kernels.lanes), the algebra and the
exponential by lqcdflow.kernels.su_n_numba, all in the operations of lqcdflow.groups and SUN
in their order (the rules: lqcdflow.kernels.compiled). SU(3)'s exponential needs NumPy's own
arccos: one pass writes its arguments, NumPy takes the arccos, a second pass makes the
exponentials. float32 is not offered (NumPy has its own vectorised float32 sine and cosine).
"""

import numba
import numpy as np

from lqcdflow.groups.su_n import C1_SERIES, SINC_SERIES
from lqcdflow.kernels.compiled import CompiledMD, block_range, numpy_trigonometry_differs
from lqcdflow.kernels.jit import kernel
from lqcdflow.kernels.lanes import LANES, add_term, adjoint, blocks, load, load_parts, \
    mul, split_parts
from lqcdflow.kernels.su_n_numba import algebra_matrices, arccos_argument, coordinate, \
    exponentials, invariants

# Scratch matrices of the momentum update: U_mu(x), U_nu(x + mu), L, U_nu(x), U_mu(x + nu), R,
# an adjoint, a term, and the lower staples' links and products.
_SCRATCH = 12


@kernel(inline="always")
def _add_lower_staple(re, im, sites, lanes, stride, mu, nu, wr, wi, sr, si):
    """A_mu += L(y)^dagger U_nu(y), L(y) = U_mu(y) U_nu(y + mu), y = x - nu (with mu and nu
    swapped this is the lower staple R(x - mu)^dagger U_mu(x - mu) of A_nu); scratch 6 to
    11."""
    load_parts(re, im, mu, sites, -stride[nu], wr[8], wi[8])
    load_parts(re, im, nu, sites, stride[mu] - stride[nu], wr[9], wi[9])
    mul(wr[8], wi[8], wr[9], wi[9], wr[10], wi[10], lanes)
    adjoint(wr[10], wi[10], wr[6], wi[6], lanes)
    load_parts(re, im, nu, sites, -stride[nu], wr[11], wi[11])
    mul(wr[6], wi[6], wr[11], wi[11], wr[7], wi[7], lanes)
    add_term(sr[mu], si[mu], wr[7], wi[7], False, lanes)


@kernel(parallel=True)
def _momentum_update(re, im, inside, stride, pi, kinds, gen_j, gen_k, half_c, beta_over_n,
                     minus_c):
    """P(c) (module docstring). (re, im): the parts of the padded field (split_parts: D, N, N,
    padded sites); inside[i] is local site i's padded index, stride[mu] the padded index step
    of direction mu; ``pi`` (sites, D, N^2 - 1); the generators as arrays (kind, j, k,
    0.5 c_k)."""
    volume, ndim, n = inside.shape[0], re.shape[0], re.shape[1]
    parts = blocks(volume)
    for block in numba.prange(parts):  # threads take blocks of sites
        first, stop = block_range(block, parts, volume)
        wr, wi = np.zeros((_SCRATCH, n, n, LANES)), np.zeros((_SCRATCH, n, n, LANES))
        sr, si = np.zeros((ndim, n, n, LANES)), np.zeros((ndim, n, n, LANES))
        started = np.zeros(ndim, np.bool_)
        for start in range(first, stop, LANES):
            sites = inside[start:min(start + LANES, stop)]
            lanes = sites.shape[0]
            started[:] = False
            for mu in range(ndim):
                for nu in range(mu + 1, ndim):
                    # corners at x: L = U_mu(x) U_nu(x + mu) in 2, R = U_nu(x) U_mu(x + nu) in 5
                    load_parts(re, im, mu, sites, 0, wr[0], wi[0])
                    load_parts(re, im, nu, sites, stride[mu], wr[1], wi[1])
                    mul(wr[0], wi[0], wr[1], wi[1], wr[2], wi[2], lanes)
                    load_parts(re, im, nu, sites, 0, wr[3], wi[3])
                    load_parts(re, im, mu, sites, stride[nu], wr[4], wi[4])
                    mul(wr[3], wi[3], wr[4], wi[4], wr[5], wi[5], lanes)
                    # upper staples: U_nu(x + mu) R^dagger, U_mu(x + nu) L^dagger
                    adjoint(wr[5], wi[5], wr[6], wi[6], lanes)
                    mul(wr[1], wi[1], wr[6], wi[6], wr[7], wi[7], lanes)
                    add_term(sr[mu], si[mu], wr[7], wi[7], not started[mu], lanes)
                    started[mu] = True
                    adjoint(wr[2], wi[2], wr[6], wi[6], lanes)
                    mul(wr[4], wi[4], wr[6], wi[6], wr[7], wi[7], lanes)
                    add_term(sr[nu], si[nu], wr[7], wi[7], not started[nu], lanes)
                    started[nu] = True
                    _add_lower_staple(re, im, sites, lanes, stride, mu, nu, wr, wi, sr, si)
                    _add_lower_staple(re, im, sites, lanes, stride, nu, mu, wr, wi, sr, si)
            for mu in range(ndim):
                load_parts(re, im, mu, sites, 0, wr[0], wi[0])
                mul(wr[0], wi[0], sr[mu], si[mu], wr[7], wi[7], lanes)
                for a in range(kinds.shape[0]):
                    for b in range(lanes):
                        g = coordinate(wr[7], wi[7], b, kinds[a], gen_j[a], gen_k[a],
                                       half_c[a])
                        pi[start + b, mu, a] = pi[start + b, mu, a] + (g * beta_over_n) * minus_c


@kernel(parallel=True)
def _arccos_arguments(pi, c, kinds, gen_j, gen_k, c_k, c1_below, out):
    """out[x, mu] <- |c_0| / c_0max of X = c P_mu(x) of SU(3), 1 where c_1 < c1_below (the
    series needs no theta): NumPy's arccos of them is the exponential's theta."""
    volume, ndim = pi.shape[0], pi.shape[1]
    parts = blocks(volume)
    for block in numba.prange(parts):
        first, stop = block_range(block, parts, volume)
        wr, wi = np.empty((2, 3, 3, LANES)), np.empty((2, 3, 3, LANES))
        for start in range(first, stop, LANES):
            lanes = min(LANES, stop - start)
            for mu in range(ndim):
                algebra_matrices(pi, start, lanes, mu, c, kinds, gen_j, gen_k, c_k, wr[0],
                                 wi[0])
                mul(wr[0], wi[0], wr[0], wi[0], wr[1], wi[1], lanes)
                for b in range(lanes):
                    c0, c1 = invariants(wr[0], wi[0], wr[1], wi[1], b)
                    out[start + b, mu] = 1.0 if c1 < c1_below else arccos_argument(c0, c1)


@kernel(parallel=True)
def _field_update(links, sites, pi, c, theta, kinds, gen_j, gen_k, c_k, c1_below, sinc_below):
    """Q(c): U_mu(x) <- exp(i c P_mu(x)) U_mu(x) in place (SUN.update_field); ``links``
    (sites, D, N, N), ``sites`` their indices 0, 1, ..., ``pi`` (sites, D, N^2 - 1), theta
    (sites, D) the exponential's angles (SU(3)), the generators as arrays (kind, j, k,
    c_k)."""
    volume, ndim, n = links.shape[0], links.shape[1], links.shape[2]
    parts = blocks(volume)
    for block in numba.prange(parts):
        first, stop = block_range(block, parts, volume)
        wr, wi = np.empty((5, n, n, LANES)), np.empty((5, n, n, LANES))
        f = np.empty((3, 2, LANES))
        for start in range(first, stop, LANES):
            lanes = min(LANES, stop - start)
            for mu in range(ndim):
                algebra_matrices(pi, start, lanes, mu, c, kinds, gen_j, gen_k, c_k, wr[0],
                                 wi[0])
                exponentials(wr[0], wi[0], theta[start:start + lanes, mu], wr[1], wi[1],
                             wr[2], wi[2], f, lanes, c1_below, sinc_below)
                load(links, sites[start:start + lanes], 0, mu, wr[3], wi[3])
                mul(wr[1], wi[1], wr[3], wi[3], wr[4], wi[4], lanes)
                for b in range(lanes):
                    for r in range(n):
                        for s in range(n):
                            links[start + b, mu, r, s] = complex(wr[4, r, s, b], wi[4, r, s, b])


def unavailable(theory):
    """Why the compiled SU(N) kernels would not give the array path's bits here, or None:
    they need complex128 links, and NumPy's float64 sin and cos must be the C library's."""
    if theory.lattice.backend.dtype != np.float64:
        return ("the SU(N) kernels need [run] dtype = 'float64' (NumPy's float32 sine and "
                "cosine are its own)")
    return numpy_trigonometry_differs()


def make(theory, threads):
    """The compiled kernels of ``theory`` with ``threads`` threads (lqcdflow.kernels.select)."""
    return SUNCompiled(theory, threads)


class SUNCompiled(CompiledMD):
    """The molecular dynamics of a :class:`lqcdflow.theories.sun.SUN` theory with the
    compiled kernels of this module (lqcdflow.kernels.compiled.CompiledMD)."""

    def __init__(self, theory, threads=1):
        super().__init__(theory, threads)
        lattice = theory.lattice
        stride = lattice.padded_strides()
        local = np.indices(lattice.local_shape).reshape(lattice.ndim, -1) + 1
        self._inside, self._stride = (stride[:, None] * local).sum(axis=0), stride
        # the parts of the padded field, kept: a fresh array costs its page faults per update
        sites = int(stride[0]) * (lattice.local_shape[0] + 2)
        self._parts = np.empty((2, lattice.ndim, theory.n, theory.n, sites))
        table, self._c = theory.group.generator_table()
        self._kinds, self._j, self._k = (np.ascontiguousarray(column) for column in table.T)
        self._half_c = 0.5 * self._c
        self._theta = np.zeros((lattice.local_volume, lattice.ndim))  # SU(3)'s angles
        self._sites = np.arange(lattice.local_volume, dtype=np.int64)

    def momentum_update(self, field, pi, term, c):
        """P(c) (module docstring), on the field padded with its halo."""
        lattice, n = self.lattice, self.theory.n
        padded = lattice.padded(field).reshape((-1, lattice.ndim, n, n))
        re, im = self._parts
        split_parts(padded, re, im)
        _momentum_update(re, im, self._inside, self._stride,
                         pi.reshape((-1, lattice.ndim, n * n - 1)), self._kinds, self._j,
                         self._k, self._half_c, np.float64(self.theory.beta / n),
                         np.float64(-c))

    def field_update(self, field, pi, c):
        """Q(c) (module docstring); for SU(3) the exponential's angles first, by NumPy's
        arccos (which is not the C library's: 386 of 4096 differ on this machine)."""
        n, ndim = self.theory.n, self.lattice.ndim
        pi, c = pi.reshape((-1, ndim, n * n - 1)), np.float64(c)
        generators = (self._kinds, self._j, self._k, self._c)
        if n == 3:
            _arccos_arguments(pi, c, *generators, C1_SERIES, self._theta)
            np.arccos(self._theta, out=self._theta)
        _field_update(field.reshape((-1, ndim, n, n)), self._sites, pi, c, self._theta,
                      *generators, C1_SERIES, SINC_SERIES)
