"""The Wilson flow of SU(N) fields: Luscher's RK3 converges at third order, constant-flux
abelian fields (critical points with known E and Q) are fixed points, the flow is gauge
covariant and decreases the action, its measurements are bitwise equal on every grid, and
t0, w0 interpolate known curves."""

import math

import numpy as np
import pytest
from mpi4py import MPI

from su_n_fields import gauge_transform, haar_links
from lqcdflow.parallel import Lattice
from lqcdflow.parallel.grid import valid_grids
from lqcdflow.theories import wilson_flow
from lqcdflow.theories.sun import SUN


def rough_field(theory, amplitude, seed):
    """exp(i amplitude p) per link, p Gaussian: a field near 1 with lattice-scale noise."""
    p = amplitude * np.random.default_rng(seed).standard_normal(
        theory.lattice.local_shape + theory.momentum_shape)
    return theory.group.exp_i(theory.group.algebra_matrix(p, np), np)


def constant_flux(shape, n, fluxes):
    """Links diag(e^{i theta}, e^{-i theta}, 1..) with n_01 flux quanta through the (0, 1)
    planes and n_23 through the (2, 3) planes: every plaquette of plane (mu, nu) has the angle
    phi = 2 pi n / (L_mu L_nu) (the U(1) construction of test_u1)."""
    theta = np.zeros(tuple(shape) + (len(shape),))
    for (mu, nu), quanta in fluxes.items():
        x_mu = np.arange(shape[mu]).reshape([-1 if d == mu else 1 for d in range(len(shape))])
        x_nu = np.arange(shape[nu]).reshape([-1 if d == nu else 1 for d in range(len(shape))])
        theta[..., nu] += 2 * np.pi * quanta * x_mu / (shape[mu] * shape[nu])
        last = [slice(None)] * len(shape)
        last[mu] = shape[mu] - 1
        theta[tuple(last) + (mu,)] -= np.broadcast_to(
            2 * np.pi * quanta * x_nu / shape[nu], theta.shape[:-1])[tuple(last)]
    links = np.zeros(tuple(shape) + (len(shape), n, n), dtype=complex)
    links[..., 0, 0] = np.exp(1j * theta)
    links[..., 1, 1] = np.exp(-1j * theta)
    for i in range(2, n):
        links[..., i, i] = 1.0
    return links


@pytest.mark.parametrize("n", [2, 3])
def test_constant_flux_fields_have_their_exact_energy_and_charge_and_do_not_flow(n):
    """F = diag(sin phi, -sin phi, 0): E_clover = 2 sum sin^2 phi, E_plaquette =
    4 sum (1 - cos phi), Q = 2 V sin phi_01 sin phi_23 / (4 pi^2) -> 2 n_01 n_23."""
    shape, fluxes = (8, 8, 6, 6), {(0, 1): 1, (2, 3): -1}
    theory = SUN(Lattice(shape, comm=MPI.COMM_SELF), n, 6.0)
    links = constant_flux(shape, n, fluxes)
    phi = {plane: 2 * np.pi * q / (shape[plane[0]] * shape[plane[1]])
           for plane, q in fluxes.items()}
    point = wilson_flow.measure(theory, links, 0.0)
    assert point.e_clover == pytest.approx(2 * sum(np.sin(p) ** 2 for p in phi.values()),
                                           rel=1e-12)
    assert point.e_plaquette == pytest.approx(4 * sum(1 - np.cos(p) for p in phi.values()),
                                              rel=1e-10)
    exact_q = 2 * math.prod(shape) * np.sin(phi[(0, 1)]) * np.sin(phi[(2, 3)]) / (4 * np.pi**2)
    assert point.charge == pytest.approx(exact_q, rel=1e-12)
    assert abs(point.charge - 2 * -1) < 0.02
    flowed = wilson_flow.flow_step(theory, links, 0.05)
    assert np.abs(flowed - links).max() < 1e-13


def test_rk3_converges_at_third_order():
    """E(t = 0.4) with steps eps, eps/2, eps/4, eps/8: successive differences shrink by ~2^3."""
    theory = SUN(Lattice((4, 4, 4, 4), comm=MPI.COMM_SELF), 3, 6.0)
    field = rough_field(theory, 0.3, 1)
    energies = [wilson_flow.wilson_flow(theory, field, eps, round(0.4 / eps), round(0.4 / eps))[-1]
                .e_plaquette for eps in (0.1, 0.05, 0.025, 0.0125)]
    differences = np.abs(np.diff(energies))
    ratios = differences[:-1] / differences[1:]
    assert all(6.5 < r < 12 for r in ratios), (energies, ratios)


def test_flow_decreases_the_action_and_is_gauge_covariant():
    shape, n = (4, 4, 2, 4), 3
    theory = SUN(Lattice(shape, comm=MPI.COMM_SELF), n, 6.0)
    field = haar_links(shape, n, 2)
    g = theory.group.haar(np.random.default_rng(3).standard_normal(shape + (n - 1, n, 2)), np)
    points = wilson_flow.wilson_flow(theory, field, 0.05, 20, 2)
    transformed = wilson_flow.wilson_flow(theory, gauge_transform(field, g), 0.05, 20, 2)
    energies = [p.e_plaquette for p in points]
    assert all(b < a for a, b in zip(energies, energies[1:]))
    for p, q in zip(points, transformed):
        assert abs(p.e_plaquette - q.e_plaquette) < 1e-11
        assert abs(p.e_clover - q.e_clover) < 1e-11 and abs(p.charge - q.charge) < 1e-11
    assert points[0].e_plaquette == pytest.approx(
        2 * n * 6 * (1 - theory.measure(field)["plaquette"]), rel=1e-14)


@pytest.mark.mpi
def test_flow_is_bitwise_identical_on_every_grid(comm):
    shape, n = (4, 2, 4, 4), 3
    field = comm.bcast(haar_links(shape, n, 4))
    serial = SUN(Lattice(shape, comm=MPI.COMM_SELF), n, 6.0)
    reference = wilson_flow.wilson_flow(serial, field, 0.1, 2)
    flowed = wilson_flow.flow_step(serial, field, 0.1)
    for grid in valid_grids(shape, comm.Get_size()):
        theory = SUN(Lattice(shape, comm=comm, grid=grid), n, 6.0)
        lat = theory.lattice
        assert wilson_flow.wilson_flow(theory, lat.scatter(field), 0.1, 2) == reference, grid
        mine = wilson_flow.flow_step(theory, lat.scatter(field), 0.1)
        assert mine.tobytes() == flowed[lat.local_slices()].tobytes(), grid


def test_t0_and_w0_of_known_curves():
    """t^2 E = 0.1 + 0.5 t: t0 = 0.4; W = t d/dt(t^2 E) = 0.5 t: w0 = sqrt(0.6)."""
    t = np.arange(1, 101) * 0.01
    e = (0.1 + 0.5 * t) / t ** 2
    assert wilson_flow.scale_t0(t, e) == pytest.approx(0.4, rel=1e-12)
    assert wilson_flow.scale_w0(t, e) == pytest.approx(math.sqrt(0.6), rel=1e-12)
    assert wilson_flow.scale_t0(t, e / 10) is None  # never reaches 0.3
    with pytest.raises(ValueError, match="not a multiple of flow_epsilon"):
        SUN(Lattice((4, 4), comm=MPI.COMM_SELF), 2, 1.0, flow_t_max=0.1, flow_epsilon=0.03)
