"""Exact 2D U(1) results (tests/exact_u1.py) against independent computations.

* ``bessel_i`` against scipy.special.iv;
* the Bessel-series formulas against a double-precision evaluation of the same sums by
  quadrature (trapezoid for I_n, Gauss-Legendre for the phi moments), where that is accurate;
* plaquette and chi_t at V = 1, 2, 3, 4 against direct integrals over plaquette or link angles
  (no Bessel functions, no Fourier sums): wrap into [-pi, pi), Q = sum wrap / 2pi;
* the V -> infinity, beta -> 0 and beta -> infinity limits, and that wrong inputs are caught.
"""

import math

import numpy as np
import pytest

from exact_u1 import (bessel_i, plaquette, plaquette_infinite_volume, topological_susceptibility,
                      topological_susceptibility_infinite_volume)

PI, TWO_PI = np.pi, 2 * np.pi


def approx(expected, rel, abs=0.0):
    """pytest.approx without its default absolute tolerance of 1e-12."""
    return pytest.approx(expected, rel=rel, abs=abs)


def wrap(x):
    return (x + PI) % TWO_PI - PI


def scaled_bessel(n, beta, m=64):
    """e^-beta I_n(beta) by the midpoint rule on [0, pi] (exponentially accurate here)."""
    t = PI * (np.arange(m) + 0.5) / m
    return float(np.mean(np.exp(beta * (np.cos(t) - 1)) * np.cos(n * t)))


def series_by_quadrature(beta, volume, nmax=40):
    """<cos theta_P> and chi_t from the n-sums, evaluated in double precision by quadrature."""
    x, w = np.polynomial.legendre.leggauss(200)
    phi, w = PI * x, PI * w * np.exp(beta * (np.cos(PI * x) - 1))
    n = np.arange(-nmax, nmax + 1)
    i_n = np.array([scaled_bessel(k, beta) for k in range(-nmax - 1, nmax + 2)])
    i_n, w = i_n / i_n[nmax + 1], w / i_n[nmax + 1]          # ratios to I_0: no underflow
    i_nm1, i_n, i_np1 = i_n[:-2], i_n[1:-1], i_n[2:]
    k_n = np.cos(np.outer(n, phi)) @ (w * phi ** 2)
    j_n = np.sin(np.outer(n, phi)) @ (w * phi)
    z = np.sum(i_n ** volume)
    plaq = np.sum(i_n ** (volume - 1) * (i_nm1 + i_np1) / 2) / z
    chi = np.sum(i_n ** (volume - 1) * k_n / (8 * PI ** 3)
                 - (volume - 1) * i_n ** (volume - 2) * j_n ** 2 / (16 * PI ** 4)) / z
    return plaq, chi


def averages(beta, theta_p, weight=1.0):
    """<cos theta_P> and <Q^2>/V from plaquette angles theta_p[P, ...] with quadrature weights."""
    volume = theta_p.shape[0]
    w = weight * np.exp(beta * (np.cos(theta_p) - 1).sum(axis=0))
    q = wrap(theta_p).sum(axis=0) / TWO_PI
    assert np.abs(q - np.round(q)).max() < 1e-9
    z = w.sum()
    return (w * np.cos(theta_p).mean(axis=0)).sum() / z, (w * np.round(q) ** 2).sum() / z / volume


def v3_by_regions(beta, nodes=96):
    """V = 3 by Gauss-Legendre over theta_1 = t and s = theta_1 + theta_2, theta_3 = -s.

    The charge (and the t-range) changes only at s = -pi, 0, pi, so the integrand is analytic
    on each piece and the quadrature converges exponentially.
    """
    x, w = np.polynomial.legendre.leggauss(nodes)
    parts = []
    for lo, hi in [(-TWO_PI, -PI), (-PI, 0.0), (0.0, PI), (PI, TWO_PI)]:
        s = lo + (hi - lo) * (x + 1) / 2
        ws = w * (hi - lo) / 2
        t_lo, t_hi = np.maximum(-PI, s - PI), np.minimum(PI, s + PI)
        t = t_lo[:, None] + (t_hi - t_lo)[:, None] * (x[None, :] + 1) / 2
        wt = ws[:, None] * (t_hi - t_lo)[:, None] / 2 * w[None, :]
        s = np.broadcast_to(s[:, None], t.shape)
        parts.append((np.stack([t, s - t, -s]), wt))
    theta_p = np.concatenate([p.reshape(3, -1) for p, _ in parts], axis=1)
    weight = np.concatenate([wt.ravel() for _, wt in parts])
    return averages(beta, theta_p, weight)


def plaquette_angles(theta):
    """theta_P(x) = theta_0(x) + theta_1(x+e0) - theta_0(x+e1) - theta_1(x); theta[mu, x0, x1]."""
    t0, t1 = theta[0], theta[1]
    return t0 + np.roll(t1, -1, axis=0) - np.roll(t0, -1, axis=1) - t1


def link_lattice(beta, shape, free_links, n):
    """Averages on an L0 x L1 link lattice by the midpoint rule, n (odd) points per free link.

    Every link not in ``free_links`` is set to 0. That is exact: the links of a maximal tree can
    be gauged to 0, and a remaining link that enters the plaquettes only through a difference
    with a free link can be shifted to 0 by the invariance of the Haar measure. The plaquette
    average is smooth and periodic (spectral accuracy); Q jumps across lines of the grid, so
    for it the midpoint error is c h^2 + O(h^4).
    """
    grid = -PI + TWO_PI * (np.arange(n) + 0.5) / n
    mesh = np.meshgrid(*[grid] * len(free_links), indexing="ij")
    theta = np.zeros((2,) + tuple(shape) + mesh[0].shape)
    for link, values in zip(free_links, mesh):
        theta[link] = values
    return averages(beta, plaquette_angles(theta).reshape((-1,) + mesh[0].shape))


def richardson(beta, shape, free_links, n):
    """<cos theta_P> at 3n points, and chi_t extrapolated from n and 3n points (h^2 removed)."""
    coarse = link_lattice(beta, shape, free_links, n)
    fine = link_lattice(beta, shape, free_links, 3 * n)
    return fine[0], (9 * fine[1] - coarse[1]) / 8, fine[1]



# ---------------------------------------------------------------------------------------------


def test_bessel_i_against_scipy():
    special = pytest.importorskip("scipy.special")
    for n in (0, 1, 2, 5, 17, 40, -3):
        for beta in (0.0, 1e-3, 0.5, 1.0, 4.0, 12.0, 30.0):
            want = special.iv(n, beta)
            assert bessel_i(n, beta) == approx(want, rel=1e-14, abs=1e-300), (n, beta)
    assert bessel_i(3, -2.0) == approx(-special.iv(3, 2.0), rel=1e-14)


@pytest.mark.parametrize("beta, volume", [(0.5, 3), (2.0, 10), (4.0, 64), (12.0, 64),
                                          (1.0, 1000), (12.0, 10 ** 4)])
def test_series_against_double_precision_quadrature(beta, volume):
    """No cancellation at these (beta, V), so the double-precision quadrature is good to 1e-13."""
    plaq, chi = series_by_quadrature(beta, volume)
    assert plaquette(beta, volume) == approx(plaq, rel=1e-13)
    assert topological_susceptibility(beta, volume) == approx(chi, rel=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.4, 2.0, 7.0])
def test_v1_v2_trivial_charge(beta):
    """V = 1: theta_P = 0. V = 2: theta_2 = -theta_1, so <cos> = I_1(2 beta)/I_0(2 beta), Q = 0."""
    assert plaquette(beta, 1) == 1.0 and topological_susceptibility(beta, 1) == 0.0
    plaq, chi = link_lattice(beta, (1, 2), [(0, 0, 1)], n=2001)   # plaquettes -a, a
    assert chi == 0.0 and topological_susceptibility(beta, 2) == 0.0
    exact = scaled_bessel(1, 2 * beta) / scaled_bessel(0, 2 * beta)
    assert plaquette(beta, 2) == approx(exact, rel=1e-14, abs=1e-15)
    assert plaquette(beta, 2) == approx(plaq, rel=1e-13, abs=1e-15)


@pytest.mark.parametrize("beta", [0.0, 0.7, 3.0, 8.0, 12.0])
def test_v3_against_direct_integral(beta):
    """Piecewise Gauss-Legendre over the constrained plaquette angles: exact to ~1e-14, also
    for chi_t(12, 3) ~ 3.5e-21, where a double-precision n-sum has no correct digit."""
    plaq, chi = v3_by_regions(beta)
    assert plaquette(beta, 3) == approx(plaq, rel=1e-12, abs=1e-14)
    assert topological_susceptibility(beta, 3) == approx(chi, rel=1e-11)
    # the same check rejects a 5% change of beta and (beta > 0) the neighbouring volume
    assert abs(plaquette(1.05 * beta + 0.01, 3) - plaq) > 1e-4
    assert abs(topological_susceptibility(1.05 * beta + 0.01, 3) / chi - 1) > 1e-3
    if beta > 0:
        assert abs(topological_susceptibility(beta, 4) / chi - 1) > 1e-3


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_1x3_link_lattice(beta):
    """1 x 3 torus (theta_P = theta_0(x) - theta_0(x+e1)), midpoint rule on 2 links.

    Measured errors: plaquette ~1e-16; chi_t ~1e-4 at 603 points, 1.3e-10 (beta = 0.5) and
    3.9e-9 (beta = 2) after extrapolation from 201 and 603 points. Tolerance 2e-8.
    """
    plaq, chi, chi_fine = richardson(beta, (1, 3), [(0, 0, 1), (0, 0, 2)], n=201)
    assert plaquette(beta, 3) == approx(plaq, rel=1e-13)
    assert topological_susceptibility(beta, 3) == approx(chi, rel=2e-8)
    assert abs(chi_fine / chi - 1) > 1e-6            # the extrapolation did something
    assert abs(topological_susceptibility(1.05 * beta, 3) / chi - 1) > 1e-3


@pytest.mark.parametrize("beta", [0.5, 1.5])
def test_2x2_link_lattice(beta):
    """2 x 2 torus, V = 4: tree theta_0(0,0), theta_1(0,0), theta_1(1,0) gauged to 0, and
    theta_0(1,1), theta_1(0,1) shifted to 0; midpoint rule on the other three links
    (plaquettes -a, b, a + c, -b - c). Measured chi_t errors after extrapolation from 21 and 63
    points: 9e-7 (beta = 0.5), 7.5e-6 (beta = 1.5); from 27 and 81 about 2.5x smaller.
    Tolerance 2e-5; plaquette ~1e-16, tolerance 1e-13."""
    plaq, chi, chi_fine = richardson(beta, (2, 2), [(0, 0, 1), (0, 1, 0), (1, 1, 1)], n=27)
    assert plaquette(beta, 4) == approx(plaq, rel=1e-13)
    assert topological_susceptibility(beta, 4) == approx(chi, rel=2e-5)
    assert abs(chi_fine / chi - 1) > 1e-4
    assert abs(topological_susceptibility(beta, 3) / chi - 1) > 1e-2
    assert abs(topological_susceptibility(1.05 * beta, 4) / chi - 1) > 1e-3


@pytest.mark.parametrize("beta", [0.0, 0.5, 3.0, 12.0])
def test_infinite_volume_limit(beta):
    """Finite-V corrections are O((I_1/I_0)^V): below 1e-180 at V = 10^4 for beta <= 12."""
    r1 = scaled_bessel(1, beta) / scaled_bessel(0, beta)
    assert plaquette_infinite_volume(beta) == approx(r1, rel=1e-14, abs=1e-15)
    assert plaquette(beta, 10 ** 4) == approx(r1, rel=1e-14, abs=1e-15)
    x, w = np.polynomial.legendre.leggauss(200)
    weight = w * np.exp(beta * (np.cos(PI * x) - 1))
    phi2 = (weight * (PI * x) ** 2).sum() / weight.sum()
    assert topological_susceptibility_infinite_volume(beta) == approx(phi2 / (4 * PI ** 2),
                                                                             rel=1e-13)
    assert topological_susceptibility(beta, 10 ** 4) == approx(phi2 / (4 * PI ** 2), rel=1e-13)
    if beta > 0:  # and they are visible at small V
        assert abs(plaquette(beta, 4) / r1 - 1) > 1e-3
        assert abs(topological_susceptibility(beta, 5) * 4 * PI ** 2 / phi2 - 1) > 1e-3


def test_beta_zero():
    """Uniform measure: <phi^2> = pi^2/3, so chi_t = 1/12 for every V >= 3; <cos> = 0 for V >= 2."""
    assert topological_susceptibility_infinite_volume(0.0) == approx(1 / 12, rel=1e-15)
    for volume in (3, 4, 7, 64, 10 ** 4):
        assert topological_susceptibility(0.0, volume) == approx(1 / 12, rel=1e-15)
        assert plaquette(0.0, volume) == 0.0


def test_large_beta():
    """chi_t = (1 + 1/(2 beta) + c/beta^2 + ...)/(4 pi^2 beta), c ~ 0.5-0.6 (from the expansion
    of 1 - cos phi). Loose check of the leading term (5%) and of the 1/(2 beta) term (1/beta^2)."""
    for beta in (12.0, 30.0):
        x = topological_susceptibility_infinite_volume(beta) * 4 * PI ** 2 * beta
        assert abs(x - 1) < 0.05
        assert abs(x - 1 - 1 / (2 * beta)) < 1 / beta ** 2
        assert abs(x - 1) > 1 / (4 * beta)
    # at small V the charge is exponentially suppressed: chi_t(12, 3) ~ 3.5e-21, and positive
    assert 1e-22 < topological_susceptibility(12.0, 3) < 1e-20


def test_wrong_beta_is_detected():
    for beta, volume in [(1.0, 64), (4.0, 256), (12.0, 10)]:
        p, c = plaquette(beta, volume), topological_susceptibility(beta, volume)
        assert abs(plaquette(1.05 * beta, volume) - p) > 1e-4 * p
        assert abs(topological_susceptibility(1.05 * beta, volume) - c) > 1e-3 * c


def test_invalid_arguments():
    for bad in [(-1.0, 4), (math.nan, 4), (1.0, 0), (1.0, 2.5)]:
        with pytest.raises((ValueError, TypeError)):
            plaquette(*bad)
        with pytest.raises((ValueError, TypeError)):
            topological_susceptibility(*bad)
