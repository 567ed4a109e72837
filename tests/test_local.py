"""Local updates (lqcdflow.mc.local) against exact results: the 2D Ising model by Metropolis and
heatbath against the row transfer matrix (tests/exact_ising.py, itself checked against the
enumeration of all configurations), phi^4 by Metropolis against the free field and the
interacting D = 1 chain, 2D U(1) link updates against the exact finite-volume plaquette and
topological susceptibility (tests/exact_u1.py), the U(1) heatbath's draws against the von
Mises moments; a wrong coupling fails each check. Chains are bitwise identical on every
process grid, and through ``lqcdflow run`` across restarts on other rank counts.

Errors come from the Gamma method (autocorrelations included); a check passes when every
estimate lies within Z_MAX standard errors of the exact value.
"""

import functools
import math

import numpy as np
import pytest
from mpi4py import MPI

import exact_ising
import exact_u1
from exact_phi4 import chain_exact, free_field_exact, z_scores
from lqcdflow.analysis.gamma import mean
from lqcdflow.mc.driver import run_chain
from lqcdflow.mc.hmc import initial_state
from lqcdflow.mc.local import LocalSampler
from lqcdflow.parallel import Lattice
from lqcdflow.parallel.grid import valid_grids
from lqcdflow.rng import CounterRNG, uniform_from_words
from lqcdflow.theories.ising import Ising
from lqcdflow.theories.phi4 import Phi4, Phi4Couplings
from lqcdflow.theories.u1 import U1
from runs import ISING_RUN, U1_LOCAL_RUN, lqcdflow, one_line_error, series, write_run_file

Z_MAX = 4.5
BETA_C = math.log(1 + math.sqrt(2)) / 2


def sweeps(theory, algorithm, n, n_therm=200, seed=1, **settings):
    """The scalar observable series and the acceptance of n sweeps after thermalisation."""
    sampler = LocalSampler(theory, algorithm, seed, **settings)
    records = []

    def record(state, info):
        if state.trajectory > n_therm:
            records.append((theory.measure(state.field), info))

    run_chain(sampler, initial_state(theory, CounterRNG(seed), "hot"), n + n_therm, [record])
    out = {k: np.array([obs[k] for obs, _ in records]) for k in records[0][0]}
    out["acceptance"] = np.array([info.acceptance for _, info in records])
    return out


# ------------------------------------------------------------------------------- Ising
exact_2d = functools.lru_cache(exact_ising.ising_2d)


@pytest.mark.parametrize("beta", [0.2, BETA_C, 0.7])
def test_transfer_matrix_equals_enumeration(beta):
    a, b = exact_2d(4, beta), exact_ising.enumerated(4, beta)
    assert all(abs(a[k] - b[k]) < 1e-12 for k in a), (a, b)


def ising_z(series, L, exact):
    V = L * L
    checks = [(mean(series["energy"] / V), exact["energy_density"]),
              (mean(series["abs_m"] / V), exact["abs_m"]),
              (mean(series["m2"] / V**2), exact["m2"]),
              (mean(series["m4"] / V**4), exact["m4"])]
    return [(e.value - x) / e.error for e, x in checks]


@pytest.mark.parametrize("algorithm", ["metropolis", "heatbath"])
@pytest.mark.parametrize("L, beta, n", [(4, 0.3, 4000), (8, BETA_C, 8000)])
def test_2d_ising_is_exact(algorithm, L, beta, n):
    """Energy, |M|, M^2 and M^4 against the transfer matrix, at a disordered coupling and at
    the critical one; the same chain compared with the exact values at 1.15 beta fails."""
    series = sweeps(Ising(Lattice((L, L), comm=MPI.COMM_SELF), beta), algorithm, n)
    z = ising_z(series, L, exact_2d(L, beta))
    assert max(abs(x) for x in z) < Z_MAX, z
    assert max(abs(x) for x in ising_z(series, L, exact_2d(L, 1.15 * beta))) > Z_MAX
    if algorithm == "metropolis":  # the flip of a spin with h = 0 is always accepted
        assert 0.1 < series["acceptance"].mean() < 1.0


def test_heatbath_probabilities():
    """P(s = +1 | h) = 1 / (1 + exp(-2 beta h)) for every h of the 2D lattice."""
    theory = Ising(Lattice((4, 4), comm=MPI.COMM_SELF), 0.37)
    h = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
    for hi in h:
        p = 1 / (1 + math.exp(-2 * 0.37 * hi))
        for u, spin in ((p * (1 - 1e-12), 1.0), (p * (1 + 1e-12), -1.0)):
            assert theory.heatbath(np.array([hi]), lambda a: (np.array([u]), None))[0] == spin


# ------------------------------------------------------------------------------- phi^4
def test_phi4_metropolis_free_field_is_exact():
    shape, kappa = (8, 8), 0.2
    theory = Phi4(Lattice(shape, comm=MPI.COMM_SELF), Phi4Couplings.hopping(kappa, 0.0))
    series = sweeps(theory, "metropolis", 4000, hits=2, width=1.5)
    z = z_scores(series, np.prod(shape), *free_field_exact(shape, kappa))
    assert max(abs(np.array(z))) < Z_MAX, z
    assert 0.3 < series["acceptance"].mean() < 0.9
    wrong = z_scores(series, np.prod(shape), *free_field_exact(shape, 1.1 * kappa))
    assert max(abs(np.array(wrong))) > Z_MAX, wrong


def test_phi4_metropolis_interacting_chain_is_exact():
    length, kappa, lam = 8, 0.3, 0.5
    g, s_density = chain_exact(length, kappa, lam)
    theory = Phi4(Lattice((length,), comm=MPI.COMM_SELF), Phi4Couplings.hopping(kappa, lam))
    series = sweeps(theory, "metropolis", 6000, hits=3, width=1.5)
    z = z_scores(series, length, g.sum(), s_density, g)
    assert max(abs(np.array(z))) < Z_MAX, z
    g_wrong, s_wrong = chain_exact(length, 1.2 * kappa, lam)
    wrong = z_scores(series, length, g_wrong.sum(), s_wrong, g_wrong)
    assert max(abs(np.array(wrong))) > Z_MAX, wrong


# ------------------------------------------------------------------------------- U(1) links
def von_mises_moments(kappa):
    """<cos y>, <cos 2y> of the density exp(kappa cos y): I_1/I_0 and I_2/I_0."""
    from scipy.special import ive

    return [ive(n, kappa) / ive(0, kappa) for n in (1, 2)]


@pytest.mark.parametrize("beta, staple", [(1.0, 0.3 - 0.2j), (2.0, 1.5 + 2.0j),
                                          (5.0, -3.0 + 0.5j), (0.7, 1e-9), (1.0, 0.0)])
def test_u1_heatbath_draws_the_von_mises_density(beta, staple):
    """theta + arg A of 2e5 independent heatbath draws for one staple sum A: <cos>, <cos 2.>
    against the Bessel ratios at kappa = beta |A|, <sin> = 0; at 1.05 kappa it fails (A = 0
    too: there the density is uniform and the draws never read kappa)."""
    n = 200_000
    theory = U1(Lattice((4, 4), comm=MPI.COMM_SELF), beta)
    dofs = np.arange(n, dtype=np.uint64)
    rng = CounterRNG(3)

    def draw(attempt, pending=None):
        w = rng.words(dofs if pending is None else dofs[pending], 1, 9, attempt)
        return uniform_from_words(w[0], w[1]), uniform_from_words(w[2], w[3])

    y = theory.heatbath(np.full(n, staple), draw) + np.angle(staple)
    samples = [np.cos(y), np.cos(2 * y), np.sin(y)]
    errors = [x.std() / math.sqrt(n) for x in samples]

    def z(kappa):
        expected = von_mises_moments(kappa) + [0.0] if kappa else [0.0, 0.0, 0.0]
        return [(x.mean() - e) / err for x, e, err in zip(samples, expected, errors)]

    kappa = beta * abs(staple)
    assert max(map(abs, z(kappa))) < Z_MAX, z(kappa)
    if kappa > 0.1:
        assert max(map(abs, z(1.05 * kappa))) > Z_MAX


@pytest.mark.parametrize("shape", [(6, 4), (4, 4, 2)])
@pytest.mark.parametrize("algorithm", ["metropolis", "heatbath"])
def test_u1_sweep_delta_s_is_the_change_of_the_action(shape, algorithm):
    """The staple sums are right: each sweep's Delta S, summed from the local actions of the
    links, equals the change of the global action S = beta sum_P (1 - cos theta_P)."""
    theory = U1(Lattice(shape, comm=MPI.COMM_SELF), 1.7)
    state = initial_state(theory, CounterRNG(2), "hot")
    sampler = LocalSampler(theory, algorithm, 2, width=2.0)
    for _ in range(3):
        before = theory.measure(state.field)["action"]
        state, info = sampler.step(state)
        change = theory.measure(state.field)["action"] - before
        assert abs(info.delta_S - change) < 1e-9 * (1 + abs(change)), (info.delta_S, change)
        assert abs(change) > 0.1


def u1_z(series, L, beta):
    """z-scores of the plaquette and chi_t = <Q^2>/V against the exact 2D results."""
    V = L * L
    checks = [(mean(series["plaquette"]), exact_u1.plaquette(beta, V)),
              (mean(series["topological_charge"] ** 2 / V),
               exact_u1.topological_susceptibility(beta, V))]
    return [(e.value - float(x)) / e.error for e, x in checks]


@pytest.mark.parametrize("algorithm, settings", [("metropolis", {"hits": 2, "width": 2.0}),
                                                 ("heatbath", {})])
def test_2d_u1_link_updates_are_exact(algorithm, settings):
    """<cos theta_P> and chi_t of 8x8 U(1) at beta = 2 against the exact finite-volume
    formulas; the same chain compared with beta = 2.2 fails."""
    L, beta = 8, 2.0
    series = sweeps(U1(Lattice((L, L), comm=MPI.COMM_SELF), beta), algorithm, 3000, **settings)
    z = u1_z(series, L, beta)
    assert max(abs(x) for x in z) < Z_MAX, z
    assert max(abs(x) for x in u1_z(series, L, 1.1 * beta)) > Z_MAX
    low, high = (0.3, 0.8) if algorithm == "metropolis" else (1.0, 1.0)
    assert low <= series["acceptance"].mean() <= high


# --------------------------------------------------------------------- bitwise on every grid
THEORIES = {"ising": lambda lat: Ising(lat, 0.42),
            "phi4": lambda lat: Phi4(lat, Phi4Couplings.hopping(0.18, 1.1)),
            "u1": lambda lat: U1(lat, 1.3)}


def local_chain(theory, algorithm, n, **settings):
    """(gathered final field, [(sweep, acceptance, delta_S)])."""
    history = []
    state = run_chain(LocalSampler(theory, algorithm, 5, **settings),
                      initial_state(theory, CounterRNG(5), "hot"), n,
                      [lambda s, i: history.append((i.trajectory, i.acceptance, i.delta_S))])
    return theory.lattice.gather(state.field), history


@pytest.mark.mpi
@pytest.mark.parametrize("name, algorithm, settings", [
    ("ising", "metropolis", {}), ("ising", "heatbath", {}),
    ("phi4", "metropolis", {"hits": 2, "width": 1.2}),
    ("u1", "metropolis", {"width": 2.0}), ("u1", "heatbath", {})])
@pytest.mark.parametrize("shape", [(4, 8), (4, 4, 2)])
def test_chains_are_bitwise_identical_on_every_grid(name, algorithm, settings, shape, comm):
    reference = local_chain(THEORIES[name](Lattice(shape, comm=MPI.COMM_SELF)), algorithm, 10,
                            **settings)
    acceptances = [acceptance for _, acceptance, _ in reference[1]]
    assert max(acceptances) > 0 and (algorithm == "heatbath" or min(acceptances) < 1)
    for grid in valid_grids(shape, comm.Get_size()):
        field, history = local_chain(THEORIES[name](Lattice(shape, comm=comm, grid=grid)),
                                     algorithm, 10, **settings)
        if comm.Get_rank() == 0:
            assert field.tobytes() == reference[0].tobytes(), grid
            assert history == reference[1], grid


# ------------------------------------------------------------------------------- run files
@pytest.mark.parametrize("run_file, describe, observable", [
    (ISING_RUN, "heatbath of Ising: beta = 0.4; checkerboard sweeps", "<E>/V"),
    (U1_LOCAL_RUN, "Metropolis of U(1) Wilson gauge theory: beta = 1.5; checkerboard sweeps, "
     "1 hit(s) per update, proposal width 2", "<cos theta_P>")])
def test_lqcdflow_run_continues_bitwise_on_other_rank_counts(tmp_path, run_file, describe,
                                                             observable):
    """20 sweeps on 2 ranks, extended to 40 on 1 rank, equal 40 uninterrupted sweeps."""
    whole = write_run_file(tmp_path / "whole.toml", n_trajectories=40, **run_file)
    assert lqcdflow(["run", "-q", str(whole)]).returncode == 0
    cut = write_run_file(tmp_path / "cut.toml", n_trajectories=20, **run_file)
    assert lqcdflow(["run", "-q", str(cut)], ranks=2).returncode == 0
    write_run_file(tmp_path / "cut.toml", n_trajectories=40, **run_file)
    result = lqcdflow(["run", str(cut)])
    assert result.returncode == 0, result.stderr
    assert "continuing from checkpoint at trajectory 20" in result.stdout
    assert describe in result.stdout
    assert observable in result.stdout and "acceptance" in result.stdout
    records = series(tmp_path / "cut.h5")
    assert records == series(tmp_path / "whole.h5")
    assert "mc/acceptance" in records and "mc/accepted" not in records  # a sweep's record
    info = lqcdflow(["info", str(tmp_path / "cut.h5")])
    assert info.returncode == 0 and "trajectories: 40 (1..40), acceptance 0." in info.stdout


@pytest.mark.parametrize("replace, message", [
    ({"shape = [8, 8]": "shape = [8, 7]"},
     "[lattice] shape [8, 7] has an odd extent: algorithm = 'heatbath' updates the even"),
    ({'algorithm = "heatbath"': 'algorithm = "hmc"\nn_steps = 4'},
     "[theory] name = 'ising' cannot be used with algorithm = 'hmc'; it is sampled with "
     "'metropolis' or 'heatbath'"),
    ({'name = "ising"\nbeta = 0.4': 'form = "hopping"\nkappa = 0.2\nlambda = 0.3'},
     "[theory] name = 'phi4' cannot be used with algorithm = 'heatbath'"),
    ({'name = "ising"\nbeta = 0.4': 'name = "su3"\nbeta = 5.7',
      'algorithm = "heatbath"': 'algorithm = "metropolis"'},
     "[theory] name = 'su3' cannot be used with algorithm = 'metropolis'; it is sampled with "
     "'hmc'"),
    ({'algorithm = "heatbath"': 'algorithm = "heatbath"\nhits = 2'},
     "[sampler] key 'hits' is only used by algorithm = 'metropolis'"),
])
def test_run_files_that_cannot_be_sampled_locally(tmp_path, replace, message):
    run = write_run_file(tmp_path / "bad.toml", **ISING_RUN)
    run.write_text(_replaced(run.read_text(), replace))
    one_line_error(lqcdflow(["run", str(run)]), message)


def _replaced(text, replace):
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text
