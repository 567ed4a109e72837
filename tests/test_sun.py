"""SU(N) lattice gauge theory: gauge invariance, the force, the molecular dynamics
(reversibility, Delta H scaling), bitwise chains on every process grid, and HMC against the
exact 2D single-plaquette integrals and the strong-coupling limit in 4D.

Statistical checks use Gamma-method errors (autocorrelations included) and pass when the
estimate lies within Z_MAX standard errors of the exact value; a wrong beta must fail.
"""

import numpy as np
import pytest
from mpi4py import MPI

import exact_sun
from chains import hmc_chain
from su_n_fields import gauge_transform, haar_links
from lqcdflow.analysis.gamma import mean
from lqcdflow.groups.matrices import mul
from lqcdflow.groups.su_n import SU
from lqcdflow.mc.driver import run_chain
from lqcdflow.mc.hmc import HMC, initial_state
from lqcdflow.mc.integrators import leapfrog, omelyan2
from lqcdflow.parallel import Lattice
from lqcdflow.parallel.grid import valid_grids
from lqcdflow.rng import CounterRNG
from lqcdflow.theories.sun import SUN

Z_MAX = 4.5


def invariants(theory, links):
    values = theory.measure(links)
    names = [o.name for o in theory.observables if o.name not in ("polyakov", "unitarity")]
    return np.array([theory.action(links)] + [values[name] for name in names]
                    + list(values["polyakov"]))


@pytest.mark.mpi
@pytest.mark.parametrize("n, shape", [(2, (4, 6)), (3, (4, 2, 4)), (3, (2, 4, 2, 2))])
def test_gauge_invariance_on_every_grid(n, shape, comm):
    links = comm.bcast(haar_links(shape, n, 1))
    g = comm.bcast(SU(n).haar(np.random.default_rng(2).standard_normal(
        tuple(shape) + (n - 1, n, 2)), np))
    transformed = gauge_transform(links, g)
    for grid in valid_grids(shape, comm.Get_size()):
        theory = SUN(Lattice(shape, comm=comm, grid=grid), n, 2.1)
        lat = theory.lattice
        before = invariants(theory, lat.scatter(links))
        after = invariants(theory, lat.scatter(transformed))
        assert np.max(np.abs(after - before)) < 1e-12, (grid, before, after)
    # a change of one link that is not a gauge transformation changes the action
    theory = SUN(Lattice(shape, comm=MPI.COMM_SELF), n, 2.1)
    changed = links.copy()
    changed[(0,) * (len(shape) + 1)] = changed[(1,) * len(shape) + (0,)]
    assert abs(theory.action(changed) - theory.action(links)) > 1e-3


@pytest.mark.mpi
@pytest.mark.parametrize("n, shape", [(2, (4, 4)), (3, (4, 2, 4)), (3, (2, 2, 2, 4))])
def test_force_is_the_derivative_along_su_n_directions(n, shape, comm):
    """d S(exp(i t Omega) U)/dt at t = 0, by a central difference of order t^4, equals
    sum_{x,mu,a} F_{mu,a}(x) omega_{mu,a}(x) for a random su(N) direction, on every grid."""
    links = comm.bcast(haar_links(shape, n, 3))
    omega = comm.bcast(np.random.default_rng(4).standard_normal(
        tuple(shape) + (len(shape), n * n - 1)))
    for grid in valid_grids(shape, comm.Get_size()):
        theory = SUN(Lattice(shape, comm=comm, grid=grid), n, 1.7)
        lat = theory.lattice
        u, w = lat.scatter(links), lat.scatter(omega)

        def action_along(t):
            moved = u.copy()
            theory.update_field(moved, w, t)
            return theory.action(moved)

        h = 1e-3
        s = {k: action_along(k * h) for k in (-2, -1, 1, 2)}
        numerical = (8 * (s[1] - s[-1]) - (s[2] - s[-2])) / (12 * h)
        analytic = lat.sum(theory.force(u) * w)
        assert abs(numerical - analytic) < 1e-8 * max(1.0, abs(analytic)), grid
        out = lat.zeros(theory.momentum_shape)
        assert theory.force(u, out=out) is out


@pytest.mark.mpi
@pytest.mark.parametrize("shape", [(4, 6), (6, 2, 4)])
def test_polyakov_loop_and_line_products_on_every_grid(shape, comm):
    """A constant link V gives P_mu = tr(V^L_mu)/N; the ordered line product of random
    matrices equals the serial one bit for bit on every grid."""
    n = 3
    v = SU(n).haar(np.random.default_rng(5).standard_normal((n - 1, n, 2)), np)
    constant = np.broadcast_to(v, tuple(shape) + (len(shape), n, n)).copy()
    expected = [np.trace(np.linalg.matrix_power(v, L)) / n for L in shape]
    random = comm.bcast(haar_links(shape, n, 6)[..., 0, :, :])
    serial = Lattice(shape, comm=MPI.COMM_SELF)
    reference = serial.line_product(random, 0, lambda a, b: mul(a, b, np))
    for grid in valid_grids(shape, comm.Get_size()):
        theory = SUN(Lattice(shape, comm=comm, grid=grid), n, 1.0)
        lat = theory.lattice
        assert np.allclose(theory.measure(lat.scatter(constant))["polyakov"], expected,
                           rtol=0, atol=1e-13)
        product = lat.line_product(lat.scatter(random), 0, lambda a, b: mul(a, b, np))
        mine = reference[(slice(0, 1),) + lat.local_slices()[1:]]
        assert product.tobytes() == mine.tobytes(), grid


def test_starts_normalisation_and_bad_input():
    theory = SUN(Lattice((2, 2, 2, 2), comm=MPI.COMM_SELF), 3, 6.0)
    cold = theory.cold_start()
    assert cold.shape == (2, 2, 2, 2, 4, 3, 3) and cold.dtype == np.complex128
    assert theory.measure(cold)["plaquette"] == 1.0 and theory.action(cold) == 0.0
    hot = theory.hot_start(CounterRNG(1))
    assert theory.measure(hot)["unitarity"] < 1e-14
    assert abs(theory.measure(hot)["plaquette"]) < 0.2
    drifted = hot * (1 + 1e-9)
    assert theory.normalize(drifted.copy()).tobytes() != drifted.tobytes()
    assert 1e-9 < theory.largest_deviation < 3e-9
    assert "|UU^+-1| 2.0e-09" == theory.health()
    with pytest.raises(ValueError, match="D >= 2"):
        SUN(Lattice((8,), comm=MPI.COMM_SELF), 3, 1.0)
    with pytest.raises(ValueError, match="N = 2 and 3"):
        SUN(Lattice((4, 4), comm=MPI.COMM_SELF), 4, 1.0)


def momenta_and_field(theory, seed=9):
    rng = CounterRNG(seed)
    return theory.momenta(rng, 1), theory.hot_start(rng)


@pytest.mark.parametrize("n", [2, 3])
def test_molecular_dynamics_is_reversible(n):
    """Forward, momenta negated, forward again: back at the start to rounding."""
    theory = SUN(Lattice((4, 4, 4), comm=MPI.COMM_SELF), n, 3.0)
    hmc = HMC.of(theory, omelyan2(), 6, 1.0, CounterRNG(1))
    pi, u = momenta_and_field(theory)
    u1, pi1 = hmc.molecular_dynamics(u, pi)
    u2, pi2 = hmc.molecular_dynamics(u1, -pi1)
    assert np.abs(u1 - u).max() > 0.1
    assert np.abs(u2 - u).max() < 1e-12 and np.abs(pi2 + pi).max() < 1e-12


def test_energy_violation_scales_with_the_step_size_squared():
    """Leapfrog: Delta H = O(eps^2); halving the step divides |Delta H| by about 4."""
    theory = SUN(Lattice((4, 4, 4, 4), comm=MPI.COMM_SELF), 3, 5.5)
    pi, u = momenta_and_field(theory)
    violations = []
    for n_steps in (8, 16, 32):
        hmc = HMC.of(theory, leapfrog(), n_steps, 0.5, CounterRNG(1))
        u1, pi1 = hmc.molecular_dynamics(u, pi)
        violations.append(abs(theory.lattice.sum(hmc.hamiltonian_density(u1, pi1)
                                                 - hmc.hamiltonian_density(u, pi))))
    ratios = [violations[0] / violations[1], violations[1] / violations[2]]
    assert all(3.5 < r < 4.5 for r in ratios), (violations, ratios)


@pytest.mark.mpi
@pytest.mark.parametrize("n, shape", [(2, (4, 8)), (3, (4, 4, 2)), (3, (2, 2, 4, 4))])
def test_chains_are_bitwise_identical_on_every_grid(n, shape, comm):
    reference = hmc_chain(SUN(Lattice(shape, comm=MPI.COMM_SELF), n, 2.0), 4, n_steps=3)
    assert sum(accepted for _, _, accepted in reference[1]) > 0
    for grid in valid_grids(shape, comm.Get_size()):
        field, history = hmc_chain(SUN(Lattice(shape, comm=comm, grid=grid), n, 2.0), 4,
                                   n_steps=3)
        if comm.Get_rank() == 0:
            assert field.tobytes() == reference[0].tobytes(), grid
            assert history == reference[1], grid


def sample(n, shape, beta, n_traj, n_therm, n_steps, seed=1):
    """Plaquette, acceptance and exp(-Delta H) series of SU(N) HMC after thermalisation."""
    theory = SUN(Lattice(shape, comm=MPI.COMM_SELF), n, beta)
    rng = CounterRNG(seed)
    hmc = HMC.of(theory, omelyan2(), n_steps, 1.0, rng)
    records = []

    def record(state, info):
        if state.trajectory > n_therm:
            records.append((theory.measure(state.field)["plaquette"], info.accepted,
                            np.exp(-info.delta_H)))

    run_chain(hmc, initial_state(theory, rng, "hot"), n_traj + n_therm, [record])
    return {name: np.array(column, dtype=float)
            for name, column in zip(("plaquette", "accepted", "exp_minus_dH"), zip(*records))}


def check_plaquette(series, n, beta, wrong_beta):
    plaquette = mean(series["plaquette"])
    exact = exact_sun.single_plaquette(n, beta)
    assert abs(plaquette.value - exact) < Z_MAX * plaquette.error, (plaquette, exact)
    wrong = exact_sun.single_plaquette(n, wrong_beta)
    assert abs(plaquette.value - wrong) > Z_MAX * plaquette.error, (plaquette, wrong)
    e = mean(series["exp_minus_dH"])
    assert abs(e.value - 1) < Z_MAX * e.error


@pytest.mark.slow
@pytest.mark.parametrize("n, L, beta", [(2, 8, 3.0), (3, 8, 4.0)])
def test_2d_plaquette_is_the_single_plaquette_integral(n, L, beta):
    """In 2D the plaquettes are independent up to a global constraint of weight ~ u^V
    (exact_sun): <Re tr U_P / N> = u_N(beta). Also u_2 = I_2/I_1 by Weyl integration."""
    from scipy.special import iv

    assert abs(exact_sun.single_plaquette(2, beta) - iv(2, beta) / iv(1, beta)) < 1e-14
    assert exact_sun.single_plaquette(n, beta) ** (L * L) < 1e-15
    series = sample(n, (L, L), beta, 800, 50, 5)
    assert series["accepted"].mean() > 0.8
    check_plaquette(series, n, beta, 1.05 * beta)


@pytest.mark.parametrize("n, beta", [(2, 0.6), (3, 1.0)])
def test_strong_coupling_plaquette_in_4d(n, beta):
    """At small beta the 4D plaquette is u_N(beta) up to the cube's O(u^5) (< 1e-5 here,
    below the statistical error); u_3 = beta/18 + beta^2/216 + O(beta^3)."""
    u = exact_sun.single_plaquette(n, beta)
    if n == 3:
        assert abs(u - (beta / 18 + beta ** 2 / 216)) < 1e-4 * beta ** 3
    else:
        assert abs(u - beta / 4) < beta ** 3 / 50
    series = sample(n, (4, 4, 4, 4), beta, 250, 20, 3)
    check_plaquette(series, n, beta, 1.2 * beta)
