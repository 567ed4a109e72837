"""SU(N) for N = 2 and 3: the Lie algebra su(N), the exponential map, the projection of a
nearly unitary matrix onto the group, and Haar-random elements.

Algebra. Generators T_a (a = 1 .. N^2 - 1) are the generalised Gell-Mann matrices over 2,
Hermitian, traceless, tr(T_a T_b) = delta_ab / 2, in the order: for k = 1 .. N - 1, for
j = 0 .. k - 1 the symmetric (E_jk + E_kj)/2 and antisymmetric (-i E_jk + i E_kj)/2 pair,
then the diagonal c_k (E_00 + ... + E_{k-1,k-1} - k E_kk)/2, c_k = sqrt(2/(k(k+1))).
For N = 2 these are the Pauli matrices over 2, for N = 3 the Gell-Mann matrices over 2 in
their usual order. A real vector p maps to the Hermitian matrix P = sum_a p_a T_a, and
(1/2) sum_a p_a^2 = tr P^2.

Exponential. exp(iX) of a traceless Hermitian X, exact up to rounding:
  SU(2): X has eigenvalues +-theta, theta^2 = (1/2) tr X^2, and
         exp(iX) = cos(theta) 1 + i (sin(theta)/theta) X;
  SU(3): Cayley-Hamilton, exp(iX) = f_0 1 + f_1 X + f_2 X^2 with Morningstar and Peardon's
         closed forms (hep-lat/0311018, eqs. 29-34): c_0 = det X = (1/3) tr X^3,
         c_1 = (1/2) tr X^2, theta = arccos(c_0 / c_0max), c_0max = 2 (c_1/3)^(3/2),
         u = sqrt(c_1/3) cos(theta/3), w = sqrt(c_1) sin(theta/3), xi_0(w) = sin(w)/w,
           h_0 = (u^2 - w^2) e^{2iu} + e^{-iu} [8 u^2 cos w + 2iu (3u^2 + w^2) xi_0(w)],
           h_1 = 2u e^{2iu} - e^{-iu} [2u cos w - i (3u^2 - w^2) xi_0(w)],
           h_2 = e^{2iu} - e^{-iu} [cos w + 3iu xi_0(w)],
         f_j = h_j / (9u^2 - w^2), evaluated for |c_0| and mapped back by
         f_j(-c_0) = (-1)^j f_j(c_0)^*; for c_1 < C1_SERIES the Taylor series of exp(iX)
         reduced with X^3 = c_1 X + c_0 (error of order |X|^5 < 1e-25).
All complex arithmetic is spelled out in real operations (see lqcdflow.groups.matrices).

Projection and Haar measure. The first N - 1 rows are orthonormalised by Gram-Schmidt and the
last row is fixed by det U = 1: for SU(2) (-b^*, a^*) below (a, b), for SU(3) the complex
conjugate of the cross product of the first two rows. Applied to N - 1 rows of independent
complex Gaussian numbers this gives Haar-distributed SU(N) elements: Gram-Schmidt of Gaussian
rows gives the first N - 1 rows of a Haar-random U(N) matrix (Mezzadri, math-ph/0609050),
which are those of a Haar-random SU(N) matrix (U(N) = diag(1, .., 1, z) SU(N), z in U(1)).
Only +, -, *, / and sqrt are used, so these are the same bits on NumPy and CuPy.
"""

import math

import numpy as np

from lqcdflow.groups.matrices import from_parts, identity_deviation, join, mul, mul_parts, \
    parts, re_trace_mul_adjoint

C1_SERIES = 1e-10  # below this c_1 = tr X^2 / 2, exp(iX) of SU(3) by its Taylor series
SINC_SERIES = 1e-3  # below this angle, sin(x)/x = 1 - x^2/6 (1 - x^2/20 (1 - x^2/42))
# The kinds of generators as numbers, for compiled kernels (SU.generator_table)
SYMMETRIC, ANTISYMMETRIC, DIAGONAL = 0, 1, 2


def _cmul(ar, ai, br, bi):
    """(Re, Im) of (ar + i ai)(br + i bi)."""
    return ar * br - ai * bi, ar * bi + ai * br


def _inner(ar, ai, br, bi):
    """(Re, Im) of <a, b> = sum_k a_k^* b_k over the last axis (k in turn), kept as an axis of
    length 1."""
    re = im = None
    for k in range(ar.shape[-1]):
        a_r, a_i, b_r, b_i = (v[..., k:k + 1] for v in (ar, ai, br, bi))
        if re is None:
            re, im = a_r * b_r + a_i * b_i, a_r * b_i - a_i * b_r
        else:
            re = re + a_r * b_r
            re += a_i * b_i
            im = im + a_r * b_i
            im -= a_i * b_r
    return re, im


def _sinc(x, xp):
    """sin(x)/x, by its series below SINC_SERIES (where the quotient would lose digits)."""
    x2 = x * x
    series = 1.0 - x2 / 6.0 * (1.0 - x2 / 20.0 * (1.0 - x2 / 42.0))
    small = xp.abs(x) < SINC_SERIES
    return xp.where(small, series, xp.sin(x) / xp.where(small, 1.0, x))


class SU:
    """The group SU(N), N = 2 or 3, and its algebra (see the module docstring).

    Parameters
    ----------
    n : int
        2 or 3.
    """

    def __init__(self, n):
        if n not in (2, 3):
            raise ValueError(f"SU(N) is implemented for N = 2 and 3, got N = {n}")
        self.n = n
        self.dimension = n * n - 1
        generators = []
        for k in range(1, n):
            for j in range(k):
                generators += [("symmetric", j, k), ("antisymmetric", j, k)]
            generators.append(("diagonal", k, math.sqrt(2.0 / (k * (k + 1)))))
        self.generators = tuple(generators)

    def __repr__(self):
        return f"SU({self.n})"

    def generator_table(self):
        """The generators as arrays, for compiled kernels: (kind, j, k), (N^2 - 1, 3) int64, the
        kind SYMMETRIC, ANTISYMMETRIC or DIAGONAL (a diagonal one's j is its k, its k 0), and
        c_k, (N^2 - 1,) float64 (0 but for the diagonal ones)."""
        codes = {"symmetric": SYMMETRIC, "antisymmetric": ANTISYMMETRIC, "diagonal": DIAGONAL}
        table = [(codes[kind], j, 0 if kind == "diagonal" else k)
                 for kind, j, k in self.generators]
        c_k = [k if kind == "diagonal" else 0.0 for kind, _, k in self.generators]
        return np.array(table, np.int64), np.array(c_k, np.float64)

    # ------------------------------------------------------------------ the algebra
    def algebra_matrix(self, p, xp):
        """P = sum_a p_a T_a: Hermitian traceless matrices (..., N, N) from the real
        coordinates ``p`` (..., N^2 - 1)."""
        half = 0.5 * p
        re = xp.zeros(p.shape[:-1] + (self.n, self.n), dtype=p.dtype)
        im = xp.zeros_like(re)
        for a, (kind, j, k) in enumerate(self.generators):
            if kind == "symmetric":
                re[..., j, k] = half[..., a]
                re[..., k, j] = half[..., a]
            elif kind == "antisymmetric":
                im[..., j, k] = -half[..., a]
                im[..., k, j] = half[..., a]
            else:  # diagonal: j is k of the docstring, k its c_k
                entry = k * half[..., a]
                for m in range(j):
                    re[..., m, m] += entry
                re[..., j, j] -= j * entry
        return join(re, im, xp)

    def algebra_coordinates(self, m, xp):
        """Im tr(T_a M) for every generator: real (..., N^2 - 1) from complex (..., N, N).

        For M = i P with P = sum_b p_b T_b this is p_a / 2; for the force of a Wilson action
        it is the derivative of Re tr(exp(i w T_a) M) at w = 0, up to the sign.
        """
        re, im = m.real, m.imag
        out = xp.empty(m.shape[:-2] + (self.dimension,), dtype=re.dtype)
        for a, (kind, j, k) in enumerate(self.generators):
            if kind == "symmetric":
                out[..., a] = 0.5 * (im[..., j, k] + im[..., k, j])
            elif kind == "antisymmetric":
                out[..., a] = 0.5 * (re[..., j, k] - re[..., k, j])
            else:
                diagonal = im[..., 0, 0].copy()
                for i in range(1, j):
                    diagonal += im[..., i, i]
                diagonal -= j * im[..., j, j]
                out[..., a] = (0.5 * k) * diagonal
        return out

    # ------------------------------------------------------------------ the exponential
    def exp_i(self, x, xp):
        """exp(iX) for traceless Hermitian matrices ``x`` (..., N, N) (module docstring)."""
        return self._exp_su2(x, xp) if self.n == 2 else self._exp_su3(x, xp)

    def _exp_su2(self, x, xp):
        theta = xp.sqrt(0.5 * re_trace_mul_adjoint(x, x))
        c = xp.cos(theta)[..., None, None]
        s = _sinc(theta, xp)[..., None, None]
        re = -s * x.imag
        re[..., 0, 0] += c[..., 0, 0]
        re[..., 1, 1] += c[..., 0, 0]
        return join(re, s * x.real, xp)

    def _exp_su3(self, x, xp):
        xr, xi = parts(x, xp)
        x2r, x2i = mul_parts(xr, xi, xr, xi)
        c1 = 0.5 * re_trace_mul_adjoint(x, x)
        c0 = re_trace_mul_adjoint(from_parts(x2r, x2i, xp), x) / 3.0
        f = self._su3_coefficients(c0, c1, xp)
        series = c1 < C1_SERIES
        for j, taylor in enumerate(self._su3_series(c0, c1)):
            f[j] = tuple(xp.where(series, t, v) for t, v in zip(taylor, f[j]))
        (f0r, f0i), (f1r, f1i), (f2r, f2i) = f  # per site: broadcast over the leading (i, j)
        re = f1r * xr
        re -= f1i * xi
        re += f2r * x2r
        re -= f2i * x2i
        im = f1r * xi
        im += f1i * xr
        im += f2r * x2i
        im += f2i * x2r
        for d in range(3):
            re[d, d] += f0r
            im[d, d] += f0i
        return from_parts(re, im, xp)

    @staticmethod
    def _su3_coefficients(c0, c1, xp):
        """[(Re f_j, Im f_j) for j = 0, 1, 2] of Morningstar and Peardon (module docstring);
        not used (and not finite) where c_1 < C1_SERIES."""
        negative = c0 < 0
        safe_c1 = xp.where(c1 < C1_SERIES, 1.0, c1)
        c0max = 2.0 * (safe_c1 / 3.0) * xp.sqrt(safe_c1 / 3.0)
        theta = xp.arccos(xp.minimum(xp.abs(c0) / c0max, 1.0))
        u = xp.sqrt(safe_c1 / 3.0) * xp.cos(theta / 3.0)
        w = xp.sqrt(safe_c1) * xp.sin(theta / 3.0)
        u2, w2 = u * u, w * w
        xi0 = _sinc(w, xp)
        cos_w = xp.cos(w)
        e2r, e2i = xp.cos(2.0 * u), xp.sin(2.0 * u)  # e^{2iu}
        emr, emi = xp.cos(u), -xp.sin(u)  # e^{-iu}
        h0 = _cmul(emr, emi, 8.0 * u2 * cos_w, 2.0 * u * (3.0 * u2 + w2) * xi0)
        h0 = ((u2 - w2) * e2r + h0[0], (u2 - w2) * e2i + h0[1])
        h1 = _cmul(emr, emi, 2.0 * u * cos_w, -(3.0 * u2 - w2) * xi0)
        h1 = (2.0 * u * e2r - h1[0], 2.0 * u * e2i - h1[1])
        h2 = _cmul(emr, emi, cos_w, 3.0 * u * xi0)
        h2 = (e2r - h2[0], e2i - h2[1])
        d = 9.0 * u2 - w2
        sign = xp.where(negative, -1.0, 1.0)  # f_j(-c0) = (-1)^j f_j(c0)^*
        return [(h0[0] / d, sign * (h0[1] / d)),
                (sign * (h1[0] / d), h1[1] / d),
                (h2[0] / d, sign * (h2[1] / d))]

    @staticmethod
    def _su3_series(c0, c1):
        """(Re f_j, Im f_j) of exp(iX) = sum_k (iX)^k / k! to order |X|^4, with
        X^3 = c1 X + c0, X^4 = c0 X + c1 X^2:
        f_0 = 1 - i c0/6, f_1 = i (1 - c1/6) + c0/24, f_2 = -1/2 + c1/24."""
        zero = 0.0 * c0
        return [(1.0 + zero, -c0 / 6.0), (c0 / 24.0, 1.0 - c1 / 6.0),
                (c1 / 24.0 - 0.5, zero)]

    # ------------------------------------------------------------------ the group
    def project(self, u, xp):
        """The SU(N) matrix nearest in the Gram-Schmidt sense to each of ``u`` (module
        docstring): rows 0 .. N-2 orthonormalised, the last row fixed by det = 1."""
        done = []
        for row in range(self.n - 1):
            r, i = u.real[..., row, :], u.imag[..., row, :]
            for qr, qi in done:  # r <- r - <q, r> q
                sr, si = _cmul(*_inner(qr, qi, r, i), qr, qi)
                r, i = r - sr, i - si
            norm = xp.sqrt(_inner(r, i, r, i)[0])
            done.append((r / norm, i / norm))
        if self.n == 2:
            (ar, ai), = done
            last = (-ar[..., 1:2], ai[..., 1:2]), (ar[..., 0:1], -ai[..., 0:1])
            last = (xp.concatenate([last[0][0], last[1][0]], axis=-1),
                    xp.concatenate([last[0][1], last[1][1]], axis=-1))
        else:
            (ar, ai), (br, bi) = done
            cross = []
            for c, (j, k) in enumerate(((1, 2), (2, 0), (0, 1))):
                pr, pi = _cmul(ar[..., j], ai[..., j], br[..., k], bi[..., k])
                qr, qi = _cmul(ar[..., k], ai[..., k], br[..., j], bi[..., j])
                cross.append((pr - qr, -(pi - qi)))  # conjugated
            last = (xp.stack([c[0] for c in cross], axis=-1),
                    xp.stack([c[1] for c in cross], axis=-1))
        re = xp.stack([r for r, _ in done] + [last[0]], axis=-2)
        im = xp.stack([i for _, i in done] + [last[1]], axis=-2)
        return join(re, im, xp)

    def haar(self, normals, xp):
        """Haar-random SU(N) matrices from independent standard normal numbers ``normals``
        of shape (..., N - 1, N, 2) (real and imaginary parts of the first N - 1 rows)."""
        shape = normals.shape[:-3] + (self.n, self.n)
        re = xp.zeros(shape, dtype=normals.dtype)
        im = xp.zeros_like(re)
        re[..., :-1, :] = normals[..., 0]
        im[..., :-1, :] = normals[..., 1]
        return self.project(join(re, im, xp), xp)

    @staticmethod
    def unitarity_deviation(u, xp):
        """max_ij |(U U^dagger)_ij - delta_ij| per matrix: zero up to rounding in SU(N)."""
        return identity_deviation(mul(u, u, xp, adjoint_b=True), xp)
