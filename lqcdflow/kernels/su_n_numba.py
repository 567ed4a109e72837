"""The su(N) algebra and the exponential map of lqcdflow.groups.su_n (N = 2, 3) for compiled
kernels, on runs of LANES sites (lqcdflow.kernels.lanes): the algebra matrix of momenta, the
algebra coordinates of a matrix, and exp(iX), each in the operations of SU in their order.

The exponential takes sqrt, sin and cos from the C library (NumPy's float64 ones are the same
on the CPUs seen so far: lqcdflow.kernels.compiled.numpy_trigonometry_differs). NumPy's float64
arccos is its own (386 of 4096 arguments differ here, the same at any position in an array),
so SU(3)'s angles theta are not computed here: :func:`arccos_argument` gives its argument,
the caller takes NumPy's arccos of it, and :func:`exponentials` receives theta.

Like those of lqcdflow.kernels.lanes, the functions are inlined where they are called.
"""

import math

from lqcdflow.groups.su_n import ANTISYMMETRIC, SYMMETRIC
from lqcdflow.kernels.jit import kernel
from lqcdflow.kernels.lanes import mul, re_trace_mul_adjoint


@kernel(inline="always")
def coordinate(mr, mi, b, kind, j, k, half_c):
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


@kernel(inline="always")
def sinc(x, series_below):
    """sin(x)/x, by its series below ``series_below`` (lqcdflow.groups.su_n._sinc)."""
    if abs(x) < series_below:
        x2 = x * x
        return 1.0 - x2 / 6.0 * (1.0 - x2 / 20.0 * (1.0 - x2 / 42.0))
    return math.sin(x) / x


@kernel(inline="always")
def arccos_argument(c0, c1):
    """|c_0| / c_0max, at most 1 (SU._su3_coefficients): the cosine of theta."""
    c0max = 2.0 * (c1 / 3.0) * math.sqrt(c1 / 3.0)
    return min(abs(c0) / c0max, 1.0)


@kernel(inline="always")
def su3_coefficients(c0, c1, theta, f, b, sinc_below):
    """f[j, :, b] <- (Re f_j, Im f_j) of Morningstar and Peardon for c_1 >= C1_SERIES
    (SU._su3_coefficients), theta = arccos(|c_0| / c_0max) given."""
    u = math.sqrt(c1 / 3.0) * math.cos(theta / 3.0)
    w = math.sqrt(c1) * math.sin(theta / 3.0)
    u2, w2 = u * u, w * w
    xi0 = sinc(w, sinc_below)
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


@kernel(inline="always")
def algebra_matrices(pi, start, lanes, mu, c, kinds, gen_j, gen_k, c_k, xr, xi):
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


@kernel(inline="always")
def invariants(xr, xi, x2r, x2i, b):
    """(c_0, c_1) = ((1/3) tr X^3, (1/2) tr X^2) of SU(3) at site b, from X and X^2."""
    c1 = 0.5 * re_trace_mul_adjoint(xr, xi, xr, xi, b)
    return re_trace_mul_adjoint(x2r, x2i, xr, xi, b) / 3.0, c1


@kernel(inline="always")
def exponentials(xr, xi, theta, er, ei, x2r, x2i, f, lanes, c1_below, sinc_below):
    """(er, ei) <- exp(iX) of the traceless Hermitian X = (xr, xi) (SU.exp_i) of each site b,
    for SU(3) with theta[b] = arccos(|c_0| / c_0max); x2r, x2i and f (3, 2, LANES) are
    scratch."""
    n = xr.shape[0]
    if n == 2:
        for b in range(lanes):
            angle = math.sqrt(0.5 * re_trace_mul_adjoint(xr, xi, xr, xi, b))
            c, s = math.cos(angle), sinc(angle, sinc_below)
            for i in range(2):
                for j in range(2):
                    er[i, j, b] = -s * xi[i, j, b]
                    ei[i, j, b] = s * xr[i, j, b]
            er[0, 0, b] = er[0, 0, b] + c
            er[1, 1, b] = er[1, 1, b] + c
        return
    mul(xr, xi, xr, xi, x2r, x2i, lanes)
    for b in range(lanes):
        c0, c1 = invariants(xr, xi, x2r, x2i, b)
        if c1 < c1_below:  # SU._su3_series
            zero = 0.0 * c0
            f[0, 0, b], f[0, 1, b] = 1.0 + zero, -c0 / 6.0
            f[1, 0, b], f[1, 1, b] = c0 / 24.0, 1.0 - c1 / 6.0
            f[2, 0, b], f[2, 1, b] = c1 / 24.0 - 0.5, zero
        else:
            su3_coefficients(c0, c1, theta[b], f, b, sinc_below)
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
