"""HMC against exact results: free fields in D = 2, 3 and the interacting D = 1 chain.

Errors come from the Gamma method (autocorrelations included); a check passes when every
estimate lies within Z_MAX standard errors of the exact value.
"""

import numpy as np
import pytest
from mpi4py import MPI

from exact_phi4 import chain_exact, free_field_exact, z_scores
from lqcdflow.analysis.gamma import mean
from lqcdflow.mc.driver import run_chain
from lqcdflow.mc.hmc import HMC, initial_state
from lqcdflow.mc.integrators import omelyan2
from lqcdflow.parallel import Lattice
from lqcdflow.rng import CounterRNG
from lqcdflow.theories.phi4 import Phi4, Phi4Couplings

Z_MAX = 4.5


def sample(shape, kappa, lam, n_traj, n_therm=100, n_steps=6, seed=1, action_kappa=None,
           force=None):
    """Run HMC and return the post-thermalisation observable series and acceptance history.

    ``action_kappa`` samples a different theory than ``kappa`` (to show the checks can fail);
    ``force`` replaces the MD force (Metropolis still uses the true action).
    """
    lat = Lattice(shape, comm=MPI.COMM_SELF)
    action = Phi4(lat, Phi4Couplings.hopping(action_kappa or kappa, lam))
    md_action = action
    if force is not None:
        md_action = Phi4(lat, action.couplings)
        md_action.force = force(action)
    rng = CounterRNG(seed)
    hmc = HMC.of(md_action, omelyan2(), n_steps, 1.0, rng)
    records = []

    def record(state, info):
        if state.trajectory > n_therm:
            records.append((action.measure(state.field), info))

    run_chain(hmc, initial_state(action, rng, "hot"), n_traj + n_therm, [record])
    series = {k: np.array([obs[k] for obs, _ in records]) for k in records[0][0]}
    series["accepted"] = np.array([info.accepted for _, info in records], dtype=float)
    series["exp_minus_dH"] = np.exp(-np.array([info.delta_H for _, info in records]))
    return series


@pytest.mark.parametrize("shape, kappa", [((8, 8), 0.2), ((4, 4, 4), 0.12)])
def test_free_field_is_exact(shape, kappa):
    series = sample(shape, kappa, 0.0, 3000)
    z = z_scores(series, np.prod(shape), *free_field_exact(shape, kappa))
    assert max(abs(np.array(z))) < Z_MAX, z


def test_free_field_check_detects_a_wrong_action():
    """The same check on a chain of a slightly different theory (kappa + 10%) must fail."""
    shape, kappa = (8, 8), 0.2
    series = sample(shape, kappa, 0.0, 3000, action_kappa=1.1 * kappa)
    z = z_scores(series, np.prod(shape), *free_field_exact(shape, kappa))
    assert max(abs(np.array(z))) > Z_MAX, z


def test_wrong_md_force_lowers_acceptance_but_stays_exact():
    """HMC is exact for any reversible, area-preserving MD: a wrong force (here 20% too weak)
    only costs acceptance, while the Metropolis step on the true H keeps the results exact."""
    shape, kappa = (8, 8), 0.2

    def weak_force(action):
        return lambda phi, out=None: 0.9 * action.force(phi, out)

    series = sample(shape, kappa, 0.0, 3000, force=weak_force)
    good = sample(shape, kappa, 0.0, 500)
    assert series["accepted"].mean() < good["accepted"].mean() - 0.2
    z = z_scores(series, np.prod(shape), *free_field_exact(shape, kappa))
    assert max(abs(np.array(z))) < Z_MAX, z


def test_interacting_chain_against_transfer_matrix():
    length, kappa, lam = 8, 0.3, 0.5
    g, s_density = chain_exact(length, kappa, lam)
    g_fine, s_fine = chain_exact(length, kappa, lam, n_grid=1201, cutoff=5.5)
    assert np.allclose(g, g_fine, atol=1e-10) and abs(s_density - s_fine) < 1e-10
    series = sample((length,), kappa, lam, 4000, n_steps=2)
    z = z_scores(series, length, g.sum(), s_density, g)
    assert max(abs(np.array(z))) < Z_MAX, z
    assert 0.5 < series["accepted"].mean() < 0.99
    e = mean(series["exp_minus_dH"])
    assert abs(e.value - 1) < Z_MAX * e.error, e
