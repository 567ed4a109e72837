"""Complex N x N matrices per site, multiplied in real arithmetic.

Fields of matrices are complex arrays with the matrix in the last two axes. Their products are
computed from the real and imaginary parts, each real operation its own array operation, in a
fixed order:

    Re (A B)_ij = sum_k [Re A_ik Re B_kj - Im A_ik Im B_kj],
    Im (A B)_ij = sum_k [Re A_ik Im B_kj + Im A_ik Re B_kj],   k = 0, 1, ..., N - 1 in turn,

because NumPy's complex multiplication is not a function of its operands alone: its SIMD loop
fuses multiply and add while the remainder loop does not, so the same product rounds
differently at another position in an array (measured: 3496 of 1003 x 16 products differ when
the array is offset). Real +, -, * round each result once wherever it stands, on NumPy and on
CuPy alike, so these products are the same bits on every decomposition of a lattice.
"""


def parts(a, xp, adjoint=False):
    """(Re, Im) of the matrices ``a`` (..., N, N) or, with ``adjoint``, of their adjoints
    (Re a^T, -Im a^T), as contiguous real arrays with the matrix axes first, (N, N, ...):
    every operation on an entry is then one pass over a contiguous array of all sites, which
    NumPy runs 2.5 times faster than the same work in loops of N over the last axis."""
    re, im = a.real, a.imag
    if adjoint:
        re, im = re.swapaxes(-1, -2), -im.swapaxes(-1, -2)
    return tuple(xp.ascontiguousarray(xp.moveaxis(x, (-2, -1), (0, 1))) for x in (re, im))


def join(re, im, xp):
    """The complex array re + i im, assembled without complex arithmetic."""
    out = xp.empty(re.shape, dtype=xp.result_type(re.dtype, xp.complex64))
    out.real[...] = re
    out.imag[...] = im
    return out


def from_parts(re, im, xp):
    """The complex matrices (..., N, N) of parts (N, N, ...) as :func:`parts` makes them."""
    return join(xp.moveaxis(re, (0, 1), (-2, -1)), xp.moveaxis(im, (0, 1), (-2, -1)), xp)


def mul_parts(ar, ai, br, bi):
    """(Re, Im) of the matrix products A B from the parts (matrix axes first) of A and B
    (module docstring)."""
    cr = ci = None
    for k in range(ar.shape[1]):
        a_r, a_i = ar[:, k:k + 1], ai[:, k:k + 1]
        b_r, b_i = br[k:k + 1, :], bi[k:k + 1, :]
        if cr is None:
            cr = a_r * b_r - a_i * b_i
            ci = a_r * b_i + a_i * b_r
        else:
            cr += a_r * b_r
            cr -= a_i * b_i
            ci += a_r * b_i
            ci += a_i * b_r
    return cr, ci


def mul(a, b, xp, adjoint_a=False, adjoint_b=False):
    """The matrix products A B (A = a or a^dagger, B = b or b^dagger), site by site.

    >>> import numpy as np
    >>> a = np.array([[1, 2j], [0, 1]]); b = np.array([[1, 0], [1j, 1]])
    >>> mul(a, b, np).tolist(), complex(mul(a, a, np, adjoint_b=True)[0, 0])
    ([[(-1+0j), 2j], [1j, (1+0j)]], (5+0j))
    """
    return from_parts(*mul_parts(*parts(a, xp, adjoint_a), *parts(b, xp, adjoint_b)), xp)


def re_trace(a):
    """Re tr A = sum_i Re A_ii (i in turn), per site."""
    total = a.real[..., 0, 0].copy()
    for i in range(1, a.shape[-1]):
        total += a.real[..., i, i]
    return total


def re_trace_mul_adjoint(a, b):
    """Re tr(A B^dagger) = sum_ij [Re A_ij Re B_ij + Im A_ij Im B_ij] (no matrix product)."""
    ar, ai, br, bi = a.real, a.imag, b.real, b.imag
    total = None
    n = a.shape[-1]
    for i in range(n):
        for j in range(n):
            term = ar[..., i, j] * br[..., i, j]
            term += ai[..., i, j] * bi[..., i, j]
            total = term if total is None else total + term
    return total


def trace(a):
    """(Re tr A, Im tr A), per site."""
    im = a.imag[..., 0, 0].copy()
    for i in range(1, a.shape[-1]):
        im += a.imag[..., i, i]
    return re_trace(a), im


def identity_deviation(a, xp):
    """max_ij |A_ij - delta_ij| over the real and imaginary parts, per site."""
    n = a.shape[-1]
    eye = xp.eye(n, dtype=a.real.dtype)
    return xp.maximum(xp.abs(a.real - eye).max(axis=(-2, -1)),
                      xp.abs(a.imag).max(axis=(-2, -1)))
