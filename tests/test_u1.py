"""U(1) lattice gauge theory: gauge invariance, the force, bitwise chains on every process
grid, and HMC against the exact 2D results and the strong-coupling limit in 3D and 4D.

Statistical checks use Gamma-method errors (autocorrelations included) and pass when the
estimate lies within Z_MAX standard errors of the exact value; a 5 % wrong beta must fail.
"""

import math

import numpy as np
import pytest
from mpi4py import MPI

import exact_u1
from chains import hmc_chain
from lqcdflow.analysis.gamma import mean
from lqcdflow.mc.driver import run_chain
from lqcdflow.mc.hmc import HMC, initial_state
from lqcdflow.mc.integrators import omelyan2
from lqcdflow.parallel import Lattice
from lqcdflow.parallel.grid import valid_grids
from lqcdflow.rng import CounterRNG
from lqcdflow.theories.u1 import U1, wrap

Z_MAX = 4.5


def random_links(shape, seed):
    """Haar-random link angles of a lattice of ``shape`` (global array, direction last)."""
    return np.random.default_rng(seed).uniform(-np.pi, np.pi, tuple(shape) + (len(shape),))


def gauge_transform(theta, alpha):
    """theta_mu(x) -> theta_mu(x) + alpha(x) - alpha(x + mu) (global arrays)."""
    out = theta.copy()
    for mu in range(theta.shape[-1]):
        out[..., mu] += alpha - np.roll(alpha, -1, axis=mu)
    return out


def invariants(theory, theta):
    """S, the plaquette, Q and the (complex) Polyakov loops: all gauge invariant."""
    values = theory.measure(theta)
    return np.array([theory.action(theta), values["plaquette"],
                     values.get("topological_charge", 0.0), *values["polyakov"]])


@pytest.mark.mpi
@pytest.mark.parametrize("shape", [(4, 6), (4, 2, 4), (2, 4, 2, 2)])
def test_gauge_invariance_on_every_grid(shape, comm):
    theta = comm.bcast(random_links(shape, 1))
    alpha = comm.bcast(np.random.default_rng(2).uniform(-np.pi, np.pi, shape))
    transformed = gauge_transform(theta, alpha)
    for grid in valid_grids(shape, comm.Get_size()):
        theory = U1(Lattice(shape, comm=comm, grid=grid), 1.3)
        lat = theory.lattice
        before = invariants(theory, lat.scatter(theta))
        after = invariants(theory, lat.scatter(transformed))
        assert np.max(np.abs(after - before)) < 1e-12, (grid, before, after)
        # the plaquette angles change by multiples of 2 pi only: the wrapped ones agree
        for plane, angle in theory.plaquette_angles(lat.scatter(theta)).items():
            other = theory.plaquette_angles(lat.scatter(transformed))[plane]
            assert np.max(np.abs(wrap(other - angle))) < 1e-12
    # a transformation that is not a gauge transformation changes the action
    theory = U1(Lattice(shape, comm=MPI.COMM_SELF), 1.3)
    shifted = theta.copy()
    shifted[(0,) * len(shape) + (0,)] += 0.3
    assert abs(theory.action(shifted) - theory.action(theta)) > 1e-3


@pytest.mark.mpi
@pytest.mark.parametrize("shape", [(4, 4), (4, 2, 4), (2, 2, 2, 4)])
def test_force_is_the_derivative_along_random_directions(shape, comm):
    """dS(theta + t omega)/dt at t = 0, by a central difference of order t^4, equals
    sum_x,mu F_mu(x) omega_mu(x), on every grid."""
    theta = comm.bcast(random_links(shape, 3))
    omega = comm.bcast(np.random.default_rng(4).standard_normal(theta.shape))
    for grid in valid_grids(shape, comm.Get_size()):
        theory = U1(Lattice(shape, comm=comm, grid=grid), 1.7)
        lat = theory.lattice
        x, w = lat.scatter(theta), lat.scatter(omega)
        h = 1e-3
        s = {k: theory.action(x + k * h * w) for k in (-2, -1, 1, 2)}
        numerical = (8 * (s[1] - s[-1]) - (s[2] - s[-2])) / (12 * h)
        analytic = lat.sum(theory.force(x) * w)
        assert abs(numerical - analytic) < 1e-8 * max(1.0, abs(analytic)), grid
        out = lat.zeros((len(shape),))
        assert theory.force(x, out=out) is out


def test_topological_charge_is_an_integer_and_counts_windings():
    """Q of a configuration with one unit of flux spread over the torus is 1; of a random one
    an integer up to rounding (the wrapped plaquette angles add up to 2 pi Q)."""
    L = 6
    theory = U1(Lattice((L, L), comm=MPI.COMM_SELF), 1.0)
    theta = np.zeros((L, L, 2))
    # U_1(x) = exp(2 pi i x_0 / L^2) and a twist in the last column of U_0 give flux 2 pi / L^2
    # through every plaquette: Q = 1
    x0 = np.arange(L)[:, None]
    theta[..., 1] = 2 * np.pi * x0 / L**2
    theta[L - 1, :, 0] = -2 * np.pi * np.arange(L) / L
    assert theory.measure(theta)["topological_charge"] == 1.0
    assert theory.measure(-theta)["topological_charge"] == -1.0
    random = random_links((L, L), 5)
    q = theory.lattice.sum(wrap(theory.plaquette_angles(random)[(0, 1)])) / (2 * np.pi)
    assert abs(q - round(q)) < 1e-12
    assert theory.measure(random)["topological_charge"] == round(q)


def test_polyakov_loop_of_a_constant_field():
    """P_mu = exp(i L_mu a_mu) for theta_mu = a_mu everywhere."""
    shape = (4, 6, 2)
    a = np.array([0.3, -0.2, 1.1])
    theory = U1(Lattice(shape, comm=MPI.COMM_SELF), 1.0)
    theta = np.broadcast_to(a, shape + (3,)).copy()
    expected = np.exp(1j * np.array(shape) * a)
    assert np.allclose(theory.measure(theta)["polyakov"], expected, rtol=0, atol=1e-13)
    assert theory.measure(theta)["plaquette"] == pytest.approx(1.0, abs=1e-15)


def test_starts_and_wrapping():
    theory = U1(Lattice((4, 4, 4), comm=MPI.COMM_SELF), 1.0)
    cold = theory.cold_start()
    assert cold.shape == (4, 4, 4, 3) and not cold.any()
    hot = theory.hot_start(CounterRNG(1))
    assert hot.min() > -np.pi and hot.max() < np.pi and hot.std() > 1.5
    big = hot + 2 * np.pi * np.array([3, -5, 7])
    wrapped = theory.normalize(big)
    assert wrapped.min() >= -np.pi and wrapped.max() < np.pi
    assert np.allclose(wrapped, hot, rtol=0, atol=1e-12)
    assert theory.normalize(hot).tobytes() == hot.tobytes()  # in range: bits unchanged
    with pytest.raises(ValueError, match="D >= 2"):
        U1(Lattice((8,), comm=MPI.COMM_SELF), 1.0)


@pytest.mark.mpi
@pytest.mark.parametrize("shape", [(4, 8), (4, 4, 2), (2, 2, 4, 4)])
def test_chains_are_bitwise_identical_on_every_grid(shape, comm):
    reference = hmc_chain(U1(Lattice(shape, comm=MPI.COMM_SELF), 1.1), 5, n_steps=5)
    assert sum(accepted for _, _, accepted in reference[1]) > 0
    for grid in valid_grids(shape, comm.Get_size()):
        field, history = hmc_chain(U1(Lattice(shape, comm=comm, grid=grid), 1.1), 5,
                                   n_steps=5)
        if comm.Get_rank() == 0:
            assert field.tobytes() == reference[0].tobytes(), grid
            assert history == reference[1], grid


def sample(shape, beta, n_traj, n_therm=100, n_steps=6, seed=1, tau=1.0):
    """Plaquette, Q and acceptance series of U(1) HMC after thermalisation."""
    theory = U1(Lattice(shape, comm=MPI.COMM_SELF), beta)
    rng = CounterRNG(seed)
    hmc = HMC.of(theory, omelyan2(), n_steps, tau, rng)
    records = []

    def record(state, info):
        if state.trajectory > n_therm:
            records.append((theory.measure(state.field), info))

    run_chain(hmc, initial_state(theory, rng, "hot"), n_traj + n_therm, [record])
    series = {name: np.array([obs[name] for obs, _ in records])
              for name in ("plaquette", "topological_charge") if name in records[0][0]}
    series["accepted"] = np.array([info.accepted for _, info in records], dtype=float)
    series["exp_minus_dH"] = np.exp(-np.array([info.delta_H for _, info in records]))
    return series


def z_2d(series, L, beta):
    """z-scores of <cos theta_P> and chi_t = <Q^2>/V against the exact finite-volume values."""
    V = L * L
    plaquette = mean(series["plaquette"])
    chi = mean(series["topological_charge"] ** 2 / V)
    return ((plaquette.value - exact_u1.plaquette(beta, V)) / plaquette.error,
            (chi.value - exact_u1.topological_susceptibility(beta, V)) / chi.error)


@pytest.mark.slow
@pytest.mark.parametrize("L, beta", [(6, 1.0), (8, 2.0), (12, 3.0)])
def test_2d_plaquette_and_topological_susceptibility_are_exact(L, beta):
    """2D U(1) on an L x L torus against the Bessel-function results (Bonati and Rossi);
    the same chain compared with the exact values at 1.05 beta fails."""
    series = sample((L, L), beta, 3000)
    assert 0.6 < series["accepted"].mean() < 1.0
    assert abs(mean(series["exp_minus_dH"]).value - 1) < Z_MAX * mean(series["exp_minus_dH"]).error
    z = z_2d(series, L, beta)
    assert max(abs(x) for x in z) < Z_MAX, z
    assert max(abs(x) for x in z_2d(series, L, 1.05 * beta)) > Z_MAX


@pytest.mark.parametrize("shape", [(6, 6, 6), (4, 4, 4, 4)])
def test_strong_coupling_plaquette_in_3d_and_4d(shape):
    """At beta = 0.3, <cos theta_P> = I_1(beta)/I_0(beta) (= beta/2 - beta^3/16 + ...) up to
    closed-surface corrections of order beta^5 (< 1e-4 here, below the statistical error)."""
    beta = 0.3
    series = sample(shape, beta, 400, n_therm=50, n_steps=3)
    plaquette = mean(series["plaquette"])
    exact = exact_u1.plaquette_infinite_volume(beta)
    assert abs(exact - (beta / 2 - beta**3 / 16)) < 1e-3
    assert abs(plaquette.value - exact) < Z_MAX * plaquette.error, (plaquette, exact)
    assert abs(plaquette.value - exact_u1.plaquette_infinite_volume(1.2 * beta)) \
        > Z_MAX * plaquette.error


def test_energy_is_conserved_and_exp_minus_delta_h_is_one():
    series = sample((8, 8), 3.0, 600, n_therm=20, n_steps=8)
    e = mean(series["exp_minus_dH"])
    assert abs(e.value - 1) < Z_MAX * e.error
    assert series["accepted"].mean() > 0.8
    assert math.isfinite(e.value)
