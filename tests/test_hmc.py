"""HMC against exact results: free fields in D = 2, 3 and the interacting D = 1 chain.

Errors come from the Gamma method (autocorrelations included); a check passes when every
estimate lies within Z_MAX standard errors of the exact value.
"""

import numpy as np
import pytest
from mpi4py import MPI

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


def free_field_exact(shape, kappa):
    """chi, <S>/V and the zero-momentum correlator of the free field (hopping form, lambda = 0).

    <phi phi>(p) = 1 / (2 (1 - 2 kappa sum_mu cos p_mu));
    G(t) = (1/L_0) sum_{p_0} e^{i p_0 t} <phi phi>(p_0, 0, ..., 0).
    """
    d = len(shape)
    p0 = 2 * np.pi * np.arange(shape[0]) / shape[0]
    propagator = 1.0 / (2 * (1 - 2 * kappa * (np.cos(p0) + d - 1)))
    return 1.0 / (2 - 4 * kappa * d), 0.5, np.fft.ifft(propagator).real


def z_scores(series, volume, chi, s_density, correlator):
    checks = [(mean(series["m2"] / volume), chi), (mean(series["action"] / volume), s_density)]
    checks += [(mean(series["correlator"][:, t]), correlator[t])
               for t in range(len(correlator) // 2 + 1)]
    return [(e.value - exact) / e.error for e, exact in checks]


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


def chain_exact(length, kappa, lam, n_grid=801, cutoff=4.5):
    """Exact <phi_0 phi_t> and <S>/V of the periodic D = 1 chain by a numerical transfer matrix.

    T(phi, phi') = sqrt(w(phi) w(phi')) exp(2 kappa phi phi') dphi, w = exp(-phi^2 -
    lambda (phi^2 - 1)^2); <phi_0 phi_t> = Tr(Phi T^t Phi T^(L-t)) / Tr T^L.
    """
    phi, dphi = np.linspace(-cutoff, cutoff, n_grid, retstep=True)
    potential = phi**2 + lam * (phi**2 - 1) ** 2
    sqrt_w = np.exp(-0.5 * potential)
    t_matrix = sqrt_w[:, None] * np.exp(2 * kappa * np.outer(phi, phi)) * sqrt_w[None, :] * dphi
    eigval, eigvec = np.linalg.eigh(t_matrix)
    eigval = eigval / eigval.max()

    def power(n):
        return (eigvec * eigval**n) @ eigvec.T

    z = np.sum(eigval**length)
    g = np.array([np.trace(phi[:, None] * power(t) * phi[None, :] @ power(length - t)) / z
                  for t in range(length)])
    mean_potential = np.trace(potential[:, None] * power(length)) / z
    return g, -2 * kappa * g[1] + mean_potential


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
