"""SU(N) group kernels: products in real arithmetic, the algebra, the exact exponential
against scipy's expm, the projection onto the group and the Haar measure."""

import numpy as np
import pytest
import scipy.linalg

from lqcdflow.groups.matrices import mul, re_trace, re_trace_mul_adjoint
from lqcdflow.groups.su_n import SU

GROUPS = [SU(2), SU(3)]


def random_matrices(shape, n, seed):
    r = np.random.default_rng(seed)
    return r.standard_normal(shape + (n, n)) + 1j * r.standard_normal(shape + (n, n))


def test_products_equal_matmul_and_do_not_depend_on_the_position():
    a, b = random_matrices((101,), 3, 1), random_matrices((101,), 3, 2)
    assert np.abs(mul(a, b, np) - a @ b).max() < 1e-14
    adjoint = a.conj().swapaxes(-1, -2)
    both = mul(a, b, np, adjoint_a=True, adjoint_b=True)
    assert np.abs(both - adjoint @ b.conj().swapaxes(-1, -2)).max() < 1e-14
    for offset in range(1, 9):  # NumPy's own complex product fails this (module docstring)
        assert mul(a[offset:], b[offset:], np).tobytes() == mul(a, b, np)[offset:].tobytes()
    assert np.allclose(re_trace(a), np.trace(a, axis1=-2, axis2=-1).real, rtol=0, atol=1e-14)
    assert np.allclose(re_trace_mul_adjoint(a, b), np.trace(a @ b.conj().swapaxes(-1, -2),
                       axis1=-2, axis2=-1).real, rtol=0, atol=1e-13)


@pytest.mark.parametrize("group", GROUPS, ids=repr)
def test_generators_are_normalised_and_coordinates_invert_the_map(group):
    basis = group.algebra_matrix(np.eye(group.dimension), np)
    gram = np.einsum("aij,bji->ab", basis, basis)
    assert np.abs(gram - 0.5 * np.eye(group.dimension)).max() < 1e-15
    assert np.abs(basis - basis.conj().swapaxes(-1, -2)).max() == 0
    assert np.abs(np.trace(basis, axis1=-2, axis2=-1)).max() < 1e-15
    p = np.random.default_rng(3).standard_normal((50, group.dimension))
    assert np.abs(group.algebra_coordinates(1j * group.algebra_matrix(p, np), np)
                  - p / 2).max() < 1e-15
    if group.n == 3:  # the Gell-Mann matrices in their usual order: lambda_2 and lambda_8
        assert np.allclose(2 * basis[1], [[0, -1j, 0], [1j, 0, 0], [0, 0, 0]])
        assert np.allclose(2 * basis[7], np.diag([1, 1, -2]) / np.sqrt(3))


def hermitian(group, shape, scale, seed):
    return group.algebra_matrix(scale * np.random.default_rng(seed).standard_normal(
        shape + (group.dimension,)), np)


def near_degenerate(seed):
    """Traceless Hermitian 3 x 3 matrices with two equal or nearly equal eigenvalues, in a
    random basis: where the closed form divides by small differences if done naively."""
    rotation = SU(3).haar(np.random.default_rng(seed).standard_normal((8, 2, 3, 2)), np)
    spectra = np.array([[1, 1, -2], [0.5, 0.5, -1], [1, -1, 0], [2, -1, -1], [1e-9, -1e-9, 0],
                        [1 + 1e-9, 1, -2 - 1e-9], [3, 3, -6], [1e-12, 1e-12, -2e-12]])
    diagonal = np.zeros((8, 3, 3), dtype=complex)
    diagonal[:, range(3), range(3)] = spectra
    x = rotation @ diagonal @ rotation.conj().swapaxes(-1, -2)
    return (x + x.conj().swapaxes(-1, -2)) / 2


@pytest.mark.parametrize("group", GROUPS, ids=repr)
def test_exponential_is_special_unitary_and_equals_expm(group):
    cases = [hermitian(group, (200,), scale, 4) for scale in (1e-9, 1e-5, 1e-2, 0.3, 1, 4)]
    if group.n == 3:
        cases.append(near_degenerate(5))
    for x in cases:
        u = group.exp_i(x, np)
        assert group.unitarity_deviation(u, np).max() < 1e-14
        assert np.abs(np.linalg.det(u) - 1).max() < 1e-14
        reference = np.array([scipy.linalg.expm(1j * m) for m in x])
        assert np.abs(u - reference).max() < 1e-13
        inverse = mul(group.exp_i(-x, np), u, np)
        assert np.abs(inverse - np.eye(group.n)).max() < 1e-14


def test_a_wrong_exponential_is_detected():
    """The comparison can fail: exp(iX) with the sign of f_1's imaginary part flipped (the
    c0 -> -c0 symmetry applied to the wrong coefficient) differs from expm."""
    group = SU(3)
    x = hermitian(group, (50,), 1.0, 6)
    wrong = group._su3_coefficients

    def flipped(c0, c1, xp):
        f = wrong(c0, c1, xp)
        f[1] = (f[1][0], -f[1][1])
        return f

    group._su3_coefficients = flipped
    u = group.exp_i(x, np)
    assert np.abs(u - np.array([scipy.linalg.expm(1j * m) for m in x])).max() > 1e-2


@pytest.mark.parametrize("group", GROUPS, ids=repr)
def test_haar_moments_of_the_trace(group):
    """Haar measure: <|tr U|^2> = 1 and <|tr U|^4> = 2 for SU(N), N >= 2 (counting invariants,
    Diaconis and Shahshahani); matrices projected from rows whose entry Re U_00 is drawn 1.5
    times wider are not Haar and fail."""
    normals = np.random.default_rng(7).standard_normal((40000, group.n - 1, group.n, 2))
    distorted = normals.copy()
    distorted[..., 0, 0, 0] *= 1.5
    for u, is_haar in ((group.haar(normals, np), True),
                       (group.haar(distorted, np), False)):
        t2 = np.abs(np.trace(u, axis1=-2, axis2=-1)) ** 2
        z = [(np.mean(v) - exact) / (np.std(v) / np.sqrt(len(v)))
             for v, exact in ((t2, 1.0), (t2 ** 2, 2.0))]
        assert (max(map(abs, z)) < 4.5) == is_haar, z
        assert group.unitarity_deviation(u, np).max() < 1e-14
        assert np.abs(np.linalg.det(u) - 1).max() < 1e-14


@pytest.mark.parametrize("group", GROUPS, ids=repr)
def test_projection_restores_the_group_and_moves_little(group):
    u = group.haar(np.random.default_rng(8).standard_normal((100, group.n - 1, group.n, 2)), np)
    noisy = u + 1e-7 * random_matrices((100,), group.n, 9)
    projected = group.project(noisy, np)
    assert group.unitarity_deviation(noisy, np).max() > 1e-8
    assert group.unitarity_deviation(projected, np).max() < 1e-14
    assert np.abs(np.linalg.det(projected) - 1).max() < 1e-14
    assert np.abs(projected - u).max() < 1e-6
    assert np.abs(group.project(u, np) - u).max() < 1e-14


def test_only_su2_and_su3():
    with pytest.raises(ValueError, match="N = 2 and 3"):
        SU(4)
