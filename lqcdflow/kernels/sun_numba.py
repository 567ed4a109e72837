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
corners x - nu + mu come from the field padded with one halo layer (Lattice.padded).

Q(c), the links: per link, U <- exp(i c P) U with P = sum_a pi_a T_a, the algebra matrix, the
exponential (SU(2) closed form; SU(3) Cayley-Hamilton with Morningstar-Peardon coefficients,
or the series below C1_SERIES) and the product in the operations of lqcdflow.groups.su_n.

The matrix products are lqcdflow.groups.matrices.mul_parts entry by entry (k in turn, each
real operation rounded alone), the other operations those of SU and SUN in their order (the
rules: lqcdflow.kernels.compiled). The exponential takes sqrt, sin and cos from the C library;
NumPy's float64 sine and cosine are the C library's on the CPUs seen so far, which
:func:`unavailable` checks where it runs. NumPy's float64 arccos is its own (386 of 4096
differ here, the same at any position in an array), so SU(3)'s angles theta are NumPy's
arccos of arguments one pass writes, and a second pass makes the exponentials. float32 is not
offered (NumPy has its own vectorised float32 sine and cosine).
"""

import math

import numba
import numpy as np

from lqcdflow.groups.su_n import C1_SERIES, SINC_SERIES
from lqcdflow.kernels.compiled import CompiledMD, numpy_trigonometry_differs
from lqcdflow.kernels.jit import kernel

# The sites are cut into at most this many blocks for the threads; each block has its own
# scratch matrices.
BLOCKS = 64
# Sites a kernel takes at once: scratch matrices are (N, N, LANES), the sites innermost, so
# that each real operation of a matrix product is one loop over sites, which the compiler
# vectorises (one site at a time, the products' chains of dependent additions leave the CPU
# waiting: 1.1x the array path's speed on 8^4 SU(3)).
LANES = 16
SYMMETRIC, ANTISYMMETRIC, DIAGONAL = 0, 1, 2  # kinds of generators (lqcdflow.groups.su_n.SU)
# Scratch matrices of the momentum update: U_mu(x), U_nu(x + mu), L, U_nu(x), U_mu(x + nu), R,
# an adjoint, a term, and the lower staples' links and products.
_SCRATCH = 12


@kernel()
def _blocks(volume):
    """Blocks of sites for the threads: BLOCKS, or fewer where that leaves under LANES sites
    to a block (each block computes whole LANES at a time)."""
    return max(1, min(BLOCKS, -(-volume // LANES)))


@kernel()
def _load(links, sites, shift, mu, re, im):
    """(re, im)[:, :, b] <- the parts of the link U_mu at site sites[b] + shift."""
    n = re.shape[0]
    for b in range(sites.shape[0]):
        site = sites[b] + shift
        for i in range(n):
            for j in range(n):
                z = links[site, mu, i, j]
                re[i, j, b] = z.real
                im[i, j, b] = z.imag


@kernel()
def _adjoint(re, im, out_re, out_im, lanes):
    """(out_re, out_im) <- (Re A^T, -Im A^T), as lqcdflow.groups.matrices.parts(adjoint)."""
    n = re.shape[0]
    for i in range(n):
        for j in range(n):
            source_re, source_im = re[i, j], im[i, j]
            target_re, target_im = out_re[j, i], out_im[j, i]
            for b in range(lanes):
                target_re[b] = source_re[b]
                target_im[b] = -source_im[b]


@kernel()
def _mul(ar, ai, br, bi, cr, ci, lanes):
    """(cr, ci) <- the parts of A B, in the operations of mul_parts."""
    n = ar.shape[0]
    if n == 3:  # written out: the sums stay in registers
        for i in range(3):
            a0r, a0i, a1r, a1i, a2r, a2i = ar[i, 0], ai[i, 0], ar[i, 1], ai[i, 1], ar[i, 2], ai[i, 2]
            for j in range(3):
                b0r, b0i, b1r, b1i, b2r, b2i = br[0, j], bi[0, j], br[1, j], bi[1, j], br[2, j], \
                    bi[2, j]
                re, im = cr[i, j], ci[i, j]
                for b in range(lanes):
                    re[b] = ((((a0r[b] * b0r[b] - a0i[b] * b0i[b]) + a1r[b] * b1r[b])
                              - a1i[b] * b1i[b]) + a2r[b] * b2r[b]) - a2i[b] * b2i[b]
                    im[b] = ((((a0r[b] * b0i[b] + a0i[b] * b0r[b]) + a1r[b] * b1i[b])
                              + a1i[b] * b1r[b]) + a2r[b] * b2i[b]) + a2i[b] * b2r[b]
        return
    for i in range(n):
        for j in range(n):
            re, im = cr[i, j], ci[i, j]
            a_r, a_i, b_r, b_i = ar[i, 0], ai[i, 0], br[0, j], bi[0, j]
            for b in range(lanes):
                re[b] = a_r[b] * b_r[b] - a_i[b] * b_i[b]
                im[b] = a_r[b] * b_i[b] + a_i[b] * b_r[b]
            for k in range(1, n):
                a_r, a_i, b_r, b_i = ar[i, k], ai[i, k], br[k, j], bi[k, j]
                for b in range(lanes):
                    re[b] = (re[b] + a_r[b] * b_r[b]) - a_i[b] * b_i[b]
                    im[b] = (im[b] + a_r[b] * b_i[b]) + a_i[b] * b_r[b]


@kernel()
def _add_term(sr, si, tr, ti, first, lanes):
    """The staple (sr, si) <- the term (tr, ti) if it is the first, else staple + term."""
    n = sr.shape[0]
    for i in range(n):
        for j in range(n):
            s_r, s_i, t_r, t_i = sr[i, j], si[i, j], tr[i, j], ti[i, j]
            for b in range(lanes):
                if first:
                    s_r[b], s_i[b] = t_r[b], t_i[b]
                else:
                    s_r[b], s_i[b] = s_r[b] + t_r[b], s_i[b] + t_i[b]


@kernel()
def _coordinate(mr, mi, b, kind, j, k, half_c):
    """Im tr(T_a M) of site b's matrix M and generator a = (kind, j, k)
    (SU.algebra_coordinates; half_c = 0.5 c_k for a diagonal one, whose j is its k)."""
    if kind == SYMMETRIC:
        return 0.5 * (mi[j, k, b] + mi[k, j, b])
    if kind == ANTISYMMETRIC:
        return 0.5 * (mr[j, k, b] - mr[k, j, b])
    diagonal = mi[0, 0, b]
    for i in range(1, j):
        diagonal = diagonal + mi[i, i, b]
    diagonal = diagonal - j * mi[j, j, b]
    return half_c * diagonal


@kernel()
def _add_lower_staple(links, sites, stride, mu, nu, wr, wi, sr, si):
    """A_mu += L(y)^dagger U_nu(y), L(y) = U_mu(y) U_nu(y + mu), y = x - nu (with mu and nu
    swapped this is the lower staple R(x - mu)^dagger U_mu(x - mu) of A_nu); scratch 6 to
    11."""
    _load(links, sites, -stride[nu], mu, wr[8], wi[8])
    _load(links, sites, stride[mu] - stride[nu], nu, wr[9], wi[9])
    _mul(wr[8], wi[8], wr[9], wi[9], wr[10], wi[10], LANES)
    _adjoint(wr[10], wi[10], wr[6], wi[6], LANES)
    _load(links, sites, -stride[nu], nu, wr[11], wi[11])
    _mul(wr[6], wi[6], wr[11], wi[11], wr[7], wi[7], LANES)
    _add_term(sr[mu], si[mu], wr[7], wi[7], False, LANES)


@kernel(parallel=True)
def _momentum_update(links, inside, stride, pi, kinds, gen_j, gen_k, half_c, beta_over_n,
                     minus_c):
    """P(c) (module docstring). ``links``: the padded field (padded sites, D, N, N);
    inside[i] is local site i's padded index, stride[mu] the padded index step of direction
    mu; ``pi`` (sites, D, N^2 - 1); the generators as arrays (kind, j, k, 0.5 c_k)."""
    volume, ndim, n = inside.shape[0], links.shape[1], links.shape[2]
    blocks = _blocks(volume)
    for block in numba.prange(blocks):  # threads take blocks of sites
        first, stop = block * volume // blocks, (block + 1) * volume // blocks
        # zeros: the lanes beyond the last sites are computed too (a constant trip count
        # vectorises without remainder loops), on finite numbers, and never stored
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
                    _load(links, sites, 0, mu, wr[0], wi[0])
                    _load(links, sites, stride[mu], nu, wr[1], wi[1])
                    _mul(wr[0], wi[0], wr[1], wi[1], wr[2], wi[2], LANES)
                    _load(links, sites, 0, nu, wr[3], wi[3])
                    _load(links, sites, stride[nu], mu, wr[4], wi[4])
                    _mul(wr[3], wi[3], wr[4], wi[4], wr[5], wi[5], LANES)
                    # upper staples: U_nu(x + mu) R^dagger, U_mu(x + nu) L^dagger
                    _adjoint(wr[5], wi[5], wr[6], wi[6], LANES)
                    _mul(wr[1], wi[1], wr[6], wi[6], wr[7], wi[7], LANES)
                    _add_term(sr[mu], si[mu], wr[7], wi[7], not started[mu], LANES)
                    started[mu] = True
                    _adjoint(wr[2], wi[2], wr[6], wi[6], LANES)
                    _mul(wr[4], wi[4], wr[6], wi[6], wr[7], wi[7], LANES)
                    _add_term(sr[nu], si[nu], wr[7], wi[7], not started[nu], LANES)
                    started[nu] = True
                    _add_lower_staple(links, sites, stride, mu, nu, wr, wi, sr, si)
                    _add_lower_staple(links, sites, stride, nu, mu, wr, wi, sr, si)
            for mu in range(ndim):
                _load(links, sites, 0, mu, wr[0], wi[0])
                _mul(wr[0], wi[0], sr[mu], si[mu], wr[7], wi[7], LANES)
                for a in range(kinds.shape[0]):
                    for b in range(lanes):
                        g = _coordinate(wr[7], wi[7], b, kinds[a], gen_j[a], gen_k[a],
                                        half_c[a])
                        pi[start + b, mu, a] = pi[start + b, mu, a] + (g * beta_over_n) * minus_c


@kernel()
def _sinc(x, series_below):
    """sin(x)/x, by its series below ``series_below`` (lqcdflow.groups.su_n._sinc)."""
    if abs(x) < series_below:
        x2 = x * x
        return 1.0 - x2 / 6.0 * (1.0 - x2 / 20.0 * (1.0 - x2 / 42.0))
    return math.sin(x) / x


@kernel()
def _re_trace_mul_adjoint(ar, ai, br, bi, b):
    """Re tr(A B^dagger) = sum_ij [Re A_ij Re B_ij + Im A_ij Im B_ij], (i, j) in turn, of site
    b's matrices."""
    n = ar.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(n):
            term = ar[i, j, b] * br[i, j, b]
            term = term + ai[i, j, b] * bi[i, j, b]
            total = term if i == 0 and j == 0 else total + term
    return total


@kernel()
def _arccos_argument(c0, c1):
    """|c_0| / c_0max, at most 1 (SU._su3_coefficients): the cosine of theta."""
    c0max = 2.0 * (c1 / 3.0) * math.sqrt(c1 / 3.0)
    return min(abs(c0) / c0max, 1.0)


@kernel()
def _su3_coefficients(c0, c1, theta, f, b, sinc_below):
    """f[j, :, b] <- (Re f_j, Im f_j) of Morningstar and Peardon for c_1 >= C1_SERIES
    (SU._su3_coefficients), theta = arccos(|c_0| / c_0max) given."""
    u = math.sqrt(c1 / 3.0) * math.cos(theta / 3.0)
    w = math.sqrt(c1) * math.sin(theta / 3.0)
    u2, w2 = u * u, w * w
    xi0 = _sinc(w, sinc_below)
    cos_w = math.cos(w)
    e2r, e2i = math.cos(2.0 * u), math.sin(2.0 * u)
    emr, emi = math.cos(u), -math.sin(u)
    br, bi = 8.0 * u2 * cos_w, 2.0 * u * (3.0 * u2 + w2) * xi0
    h0r = (u2 - w2) * e2r + (emr * br - emi * bi)
    h0i = (u2 - w2) * e2i + (emr * bi + emi * br)
    br, bi = 2.0 * u * cos_w, -(3.0 * u2 - w2) * xi0
    h1r = 2.0 * u * e2r - (emr * br - emi * bi)
    h1i = 2.0 * u * e2i - (emr * bi + emi * br)
    br, bi = cos_w, 3.0 * u * xi0
    h2r = e2r - (emr * br - emi * bi)
    h2i = e2i - (emr * bi + emi * br)
    d = 9.0 * u2 - w2
    sign = -1.0 if c0 < 0 else 1.0
    f[0, 0, b], f[0, 1, b] = h0r / d, sign * (h0i / d)
    f[1, 0, b], f[1, 1, b] = sign * (h1r / d), h1i / d
    f[2, 0, b], f[2, 1, b] = h2r / d, sign * (h2i / d)


@kernel()
def _algebra_matrices(pi, start, lanes, mu, c, kinds, gen_j, gen_k, c_k, xr, xi):
    """(xr, xi)[:, :, b] <- X = sum_a (pi_{mu,a}(x) c) T_a at the site x = start + b
    (SU.algebra_matrix of pi c)."""
    xr[:, :, :lanes] = 0.0
    xi[:, :, :lanes] = 0.0
    for b in range(lanes):
        for a in range(kinds.shape[0]):
            half = 0.5 * (pi[start + b, mu, a] * c)
            j, k = gen_j[a], gen_k[a]
            if kinds[a] == SYMMETRIC:
                xr[j, k, b], xr[k, j, b] = half, half
            elif kinds[a] == ANTISYMMETRIC:
                xi[j, k, b], xi[k, j, b] = -half, half
            else:  # diagonal: j is its k
                entry = c_k[a] * half
                for m in range(j):
                    xr[m, m, b] = xr[m, m, b] + entry
                xr[j, j, b] = xr[j, j, b] - j * entry


@kernel()
def _invariants(xr, xi, x2r, x2i, b):
    """(c_0, c_1) = ((1/3) tr X^3, (1/2) tr X^2) of SU(3) at site b, from X and X^2."""
    c1 = 0.5 * _re_trace_mul_adjoint(xr, xi, xr, xi, b)
    return _re_trace_mul_adjoint(x2r, x2i, xr, xi, b) / 3.0, c1


@kernel(parallel=True)
def _arccos_arguments(pi, c, kinds, gen_j, gen_k, c_k, c1_below, out):
    """out[x, mu] <- |c_0| / c_0max of X = c P_mu(x) of SU(3), 1 where c_1 < c1_below (the
    series needs no theta): NumPy's arccos of them is the exponential's theta."""
    volume, ndim = pi.shape[0], pi.shape[1]
    blocks = _blocks(volume)
    for block in numba.prange(blocks):
        first, stop = block * volume // blocks, (block + 1) * volume // blocks
        wr, wi = np.empty((2, 3, 3, LANES)), np.empty((2, 3, 3, LANES))
        for start in range(first, stop, LANES):
            lanes = min(LANES, stop - start)
            for mu in range(ndim):
                _algebra_matrices(pi, start, lanes, mu, c, kinds, gen_j, gen_k, c_k, wr[0],
                                  wi[0])
                _mul(wr[0], wi[0], wr[0], wi[0], wr[1], wi[1], lanes)
                for b in range(lanes):
                    c0, c1 = _invariants(wr[0], wi[0], wr[1], wi[1], b)
                    out[start + b, mu] = 1.0 if c1 < c1_below else _arccos_argument(c0, c1)


@kernel()
def _exponentials(xr, xi, theta, er, ei, x2r, x2i, f, lanes, c1_below, sinc_below):
    """(er, ei) <- exp(iX) of the traceless Hermitian X = (xr, xi) (SU.exp_i) of each site b,
    for SU(3) with theta[b] = arccos(|c_0| / c_0max); x2r, x2i and f (3, 2, LANES) are
    scratch."""
    n = xr.shape[0]
    if n == 2:
        for b in range(lanes):
            angle = math.sqrt(0.5 * _re_trace_mul_adjoint(xr, xi, xr, xi, b))
            c, s = math.cos(angle), _sinc(angle, sinc_below)
            for i in range(2):
                for j in range(2):
                    er[i, j, b] = -s * xi[i, j, b]
                    ei[i, j, b] = s * xr[i, j, b]
            er[0, 0, b] = er[0, 0, b] + c
            er[1, 1, b] = er[1, 1, b] + c
        return
    _mul(xr, xi, xr, xi, x2r, x2i, lanes)
    for b in range(lanes):
        c0, c1 = _invariants(xr, xi, x2r, x2i, b)
        if c1 < c1_below:  # SU._su3_series
            zero = 0.0 * c0
            f[0, 0, b], f[0, 1, b] = 1.0 + zero, -c0 / 6.0
            f[1, 0, b], f[1, 1, b] = c0 / 24.0, 1.0 - c1 / 6.0
            f[2, 0, b], f[2, 1, b] = c1 / 24.0 - 0.5, zero
        else:
            _su3_coefficients(c0, c1, theta[b], f, b, sinc_below)
    f0r, f0i, f1r, f1i, f2r, f2i = f[0, 0], f[0, 1], f[1, 0], f[1, 1], f[2, 0], f[2, 1]
    for i in range(3):
        for j in range(3):
            a_r, a_i, s_r, s_i = xr[i, j], xi[i, j], x2r[i, j], x2i[i, j]
            re, im = er[i, j], ei[i, j]
            for b in range(lanes):
                re[b] = ((f1r[b] * a_r[b] - f1i[b] * a_i[b]) + f2r[b] * s_r[b]) - f2i[b] * s_i[b]
                im[b] = ((f1r[b] * a_i[b] + f1i[b] * a_r[b]) + f2r[b] * s_i[b]) + f2i[b] * s_r[b]
    for d in range(3):
        re, im = er[d, d], ei[d, d]
        for b in range(lanes):
            re[b] = re[b] + f0r[b]
            im[b] = im[b] + f0i[b]


@kernel(parallel=True)
def _field_update(links, sites, pi, c, theta, kinds, gen_j, gen_k, c_k, c1_below, sinc_below):
    """Q(c): U_mu(x) <- exp(i c P_mu(x)) U_mu(x) in place (SUN.update_field); ``links``
    (sites, D, N, N), ``sites`` their indices 0, 1, ..., ``pi`` (sites, D, N^2 - 1), theta
    (sites, D) the exponential's angles (SU(3)), the generators as arrays (kind, j, k,
    c_k)."""
    volume, ndim, n = links.shape[0], links.shape[1], links.shape[2]
    blocks = _blocks(volume)
    for block in numba.prange(blocks):
        first, stop = block * volume // blocks, (block + 1) * volume // blocks
        wr, wi = np.empty((5, n, n, LANES)), np.empty((5, n, n, LANES))
        f = np.empty((3, 2, LANES))
        for start in range(first, stop, LANES):
            lanes = min(LANES, stop - start)
            for mu in range(ndim):
                _algebra_matrices(pi, start, lanes, mu, c, kinds, gen_j, gen_k, c_k, wr[0],
                                  wi[0])
                _exponentials(wr[0], wi[0], theta[start:start + lanes, mu], wr[1], wi[1],
                              wr[2], wi[2], f, lanes, c1_below, sinc_below)
                _load(links, sites[start:start + lanes], 0, mu, wr[3], wi[3])
                _mul(wr[1], wi[1], wr[3], wi[3], wr[4], wi[4], lanes)
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
        padded = [n + 2 for n in lattice.local_shape]
        stride = np.cumprod([1] + padded[:0:-1])[::-1].astype(np.int64)
        local = np.indices(lattice.local_shape).reshape(lattice.ndim, -1) + 1
        self._inside, self._stride = (stride[:, None] * local).sum(axis=0), stride
        kinds = {"symmetric": SYMMETRIC, "antisymmetric": ANTISYMMETRIC, "diagonal": DIAGONAL}
        generators = theory.group.generators
        self._kinds = np.array([kinds[kind] for kind, _, _ in generators], np.int64)
        self._j = np.array([j for _, j, _ in generators], np.int64)
        # a diagonal generator's third entry is its c_k, the others' their k
        self._k = np.array([k if kind != "diagonal" else 0 for kind, _, k in generators],
                           np.int64)
        self._c = np.array([k if kind == "diagonal" else 0.0 for kind, _, k in generators])
        self._half_c = 0.5 * self._c
        self._theta = np.zeros((lattice.local_volume, lattice.ndim))  # SU(3)'s angles
        self._sites = np.arange(lattice.local_volume, dtype=np.int64)

    def momentum_update(self, field, pi, term, c):
        """P(c) (module docstring), on the field padded with its halo."""
        lattice, n = self.lattice, self.theory.n
        padded = lattice.padded(field).reshape((-1, lattice.ndim, n, n))
        _momentum_update(padded, self._inside, self._stride,
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
