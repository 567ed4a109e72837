"""Langevin dynamics (lqcdflow.mc.langevin) on the free field, where even the unadjusted
algorithm is exactly solvable: its stationary covariance is A^-1 (1 - eps A / 2)^-1 for the
action S = phi A phi / 2, an O(eps) bias. The unadjusted chain must match that biased result
at two step sizes (and miss the true one), MALA the true one, also on U(1) links; chains are
bitwise identical on every process grid. Errors from the Gamma method; Z_MAX standard errors pass."""

import numpy as np
import pytest
from mpi4py import MPI

import exact_u1
from exact_phi4 import free_field_exact
from lqcdflow.analysis.gamma import mean
from lqcdflow.mc.driver import run_chain
from lqcdflow.mc.hmc import initial_state
from lqcdflow.mc.langevin import langevin
from lqcdflow.parallel import Lattice
from lqcdflow.parallel.grid import valid_grids
from lqcdflow.rng import CounterRNG
from lqcdflow.theories.phi4 import Phi4, Phi4Couplings
from lqcdflow.theories.u1 import U1
from runs import lqcdflow, one_line_error, write_run_file

Z_MAX = 4.5
SHAPE, KAPPA = (8, 8), 0.15


def unadjusted_exact(shape, kappa, epsilon):
    """(chi, <S>/V) of unadjusted Langevin on the free field (hopping form, lambda = 0):
    A(p) = 2 (1 - 2 kappa sum_mu cos p_mu), c(p) = 1 / (A(p) (1 - eps A(p) / 2)),
    chi = c(0), <S>/V = (1/V) sum_p A(p) c(p) / 2."""
    momenta = np.meshgrid(*[2 * np.pi * np.arange(n) / n for n in shape], indexing="ij")
    a = 2 * (1 - 2 * kappa * sum(np.cos(p) for p in momenta))
    c = 1 / (a * (1 - epsilon * a / 2))
    return c.flat[0], np.mean(a * c) / 2


def langevin_series(epsilon, metropolis, n, n_therm=300, seed=4):
    theory = Phi4(Lattice(SHAPE, comm=MPI.COMM_SELF), Phi4Couplings.hopping(KAPPA, 0.0))
    update = langevin(theory, epsilon, CounterRNG(seed), metropolis)
    records = []

    def record(state, info):
        if state.trajectory > n_therm:
            records.append((theory.measure(state.field), info.accepted))

    run_chain(update, initial_state(theory, CounterRNG(seed), "hot"), n + n_therm, [record])
    volume = np.prod(SHAPE)
    return (mean(np.array([o["m2"] for o, _ in records]) / volume),
            mean(np.array([o["action"] for o, _ in records]) / volume),
            np.mean([a for _, a in records]))


def z(estimates, exact):
    return [(e.value - x) / e.error for e, x in zip(estimates, exact)]


def test_the_exact_bias_formula_is_the_true_result_at_zero_step():
    chi, s_density, _ = free_field_exact(SHAPE, KAPPA)
    assert np.allclose(unadjusted_exact(SHAPE, KAPPA, 0.0), (chi, s_density), rtol=1e-12)


@pytest.mark.parametrize("epsilon", [0.2, 0.1])
def test_unadjusted_langevin_has_the_exact_o_eps_bias(epsilon):
    chi, s_density, accepted = langevin_series(epsilon, False, 5000)
    assert accepted == 1.0
    biased = unadjusted_exact(SHAPE, KAPPA, epsilon)
    assert max(abs(x) for x in z((chi, s_density), biased)) < Z_MAX, (chi, s_density, biased)
    truth = unadjusted_exact(SHAPE, KAPPA, 0.0)
    assert abs(z((s_density,), truth[1:])[0]) > Z_MAX  # the bias is resolved ...
    bias = s_density.value - truth[1]
    assert 0.8 < bias / (biased[1] - truth[1]) < 1.25  # ... and of the predicted size
    print(f"eps {epsilon}: <S>/V = {s_density} (exact with the bias {biased[1]:.4f}, "
          f"true {truth[1]}), chi = {chi} ({biased[0]:.4f}, {truth[0]})")


def test_mala_is_exact():
    chi, s_density, accepted = langevin_series(0.2, True, 5000)
    assert 0.2 < accepted < 0.9  # at this step MALA rejects a good part, and stays exact
    truth = unadjusted_exact(SHAPE, KAPPA, 0.0)
    assert max(abs(x) for x in z((chi, s_density), truth)) < Z_MAX, (chi, s_density, truth)


def test_mala_on_u1_links_is_exact():
    """On a group manifold the drift is the exponential map: 2D U(1) MALA against the exact
    plaquette; the same chain against the plaquette at 1.2 beta fails."""
    L, beta = 6, 1.0
    theory = U1(Lattice((L, L), comm=MPI.COMM_SELF), beta)
    update = langevin(theory, 0.1, CounterRNG(6), metropolis=True)
    plaquettes = []

    def record(state, info):
        if state.trajectory > 200:
            plaquettes.append(theory.measure(state.field)["plaquette"])

    run_chain(update, initial_state(theory, CounterRNG(6), "hot"), 4000, [record])
    estimate = mean(np.array(plaquettes))
    assert abs(estimate.value - exact_u1.plaquette(beta, L * L)) < Z_MAX * estimate.error
    assert abs(estimate.value - exact_u1.plaquette(1.2 * beta, L * L)) > Z_MAX * estimate.error


@pytest.mark.mpi
@pytest.mark.parametrize("metropolis", [True, False])
def test_chains_are_bitwise_identical_on_every_grid(metropolis, comm):
    def chain(lattice):
        theory = Phi4(lattice, Phi4Couplings.hopping(0.18, 1.1))
        history = []
        state = run_chain(langevin(theory, 0.05, CounterRNG(2), metropolis),
                          initial_state(theory, CounterRNG(2), "hot"), 12,
                          [lambda s, i: history.append((i.delta_H, i.accepted))])
        return lattice.gather(state.field), history

    reference = chain(Lattice((4, 8), comm=MPI.COMM_SELF))
    for grid in valid_grids((4, 8), comm.Get_size()):
        field, history = chain(Lattice((4, 8), comm=comm, grid=grid))
        if comm.Get_rank() == 0:
            assert field.tobytes() == reference[0].tobytes(), grid
            assert history == reference[1], grid


def test_lqcdflow_run_with_langevin(tmp_path):
    replace = {'integrator = "omelyan2"\nn_steps = 4':
               'algorithm = "langevin"\nepsilon = 0.05\nmetropolis = false'}
    run = write_run_file(tmp_path / "l.toml", n_trajectories=30, **replace)
    result = lqcdflow(["run", str(run)])
    assert result.returncode == 0, result.stderr
    assert "Langevin (unadjusted) of phi^4" in result.stdout
    assert "every trajectory accepted (no Metropolis test)" in result.stdout
    run.write_text(run.read_text().replace("metropolis = false", "metropolis = false\n"
                                           "n_steps = 3"))
    one_line_error(lqcdflow(["run", str(run)]),
                   "[sampler] key 'n_steps' is only used by algorithm = 'hmc'")
