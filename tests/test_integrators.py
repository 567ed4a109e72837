"""MD integrators: schedules, reversibility, and the order of the energy violation."""

import numpy as np
import pytest
from mpi4py import MPI

from lqcdflow.mc import integrators
from lqcdflow.mc.hmc import HMC
from lqcdflow.mc.integrators import SCHEMES, integrate, leapfrog, omelyan2, omelyan4
from lqcdflow.parallel import Lattice
from lqcdflow.rng import CounterRNG
from lqcdflow.theories.phi4 import Phi4Action, Phi4Couplings


def make_hmc(scheme, n_steps, shape=(6, 6), tau=1.0):
    lat = Lattice(shape, comm=MPI.COMM_SELF)
    action = Phi4Action(lat, Phi4Couplings.hopping(0.12, 0.6))
    return HMC(action, scheme, n_steps, tau, CounterRNG(11))


def test_schedules_merge_and_count_forces():
    assert leapfrog().describe(2) == "leapfrog x2: P(0.5) Q(1) P(1) Q(1) P(0.5)"
    assert [leapfrog().force_evaluations(n) for n in (1, 5)] == [2, 6]
    assert omelyan2().force_evaluations(5) == 11
    assert omelyan4().force_evaluations(5) == 26
    for scheme in (leapfrog(), omelyan2(0.2), omelyan4()):
        steps = scheme.schedule(3)
        for kind in "PQ":
            assert sum(u.coefficient for u in steps if u.kind == kind) == pytest.approx(3.0)
        assert [u.coefficient for u in steps] == [u.coefficient for u in reversed(steps)]


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_reversibility(name):
    hmc = make_hmc(SCHEMES[name](), 7)
    phi0 = np.random.default_rng(1).standard_normal((6, 6))
    pi0 = hmc.momenta(1)
    phi1, pi1 = hmc.molecular_dynamics(phi0, pi0)
    assert np.max(np.abs(phi1 - phi0)) > 0.1
    phi2, pi2 = hmc.molecular_dynamics(phi1, -pi1)
    assert np.max(np.abs(phi2 - phi0)) < 1e-12
    assert np.max(np.abs(pi2 + pi0)) < 1e-12


@pytest.mark.parametrize("name, order", [("leapfrog", 2), ("omelyan2", 2), ("omelyan4", 4)])
def test_energy_violation_scales_with_the_order(name, order):
    """|Delta H| ~ eps^order at fixed trajectory length: the log-log slope is the order."""
    phi = np.random.default_rng(2).standard_normal((6, 6)) * 0.8
    steps = np.array([16, 32, 64])
    mean_dh = []
    for n in steps:
        hmc = make_hmc(SCHEMES[name](), int(n))
        dh = []
        for draw in range(1, 6):
            pi = hmc.momenta(draw)
            h0 = hmc.action.lattice.sum(hmc.hamiltonian_density(phi, pi))
            h1 = hmc.action.lattice.sum(hmc.hamiltonian_density(*hmc.molecular_dynamics(phi, pi)))
            dh.append(abs(h1 - h0))
        mean_dh.append(np.mean(dh))
    slope = -np.polyfit(np.log(steps), np.log(mean_dh), 1)[0]
    assert slope == pytest.approx(order, abs=0.3), mean_dh


@pytest.mark.parametrize("chunk_sites", [7, 36, 1 << 15])
def test_chunked_updates_have_the_bits_of_whole_field_updates(chunk_sites, monkeypatch):
    """P and Q updates in chunks of CHUNK_SITES (7 does not divide the 36 sites; 36 and more
    is one chunk) give the bits of pi -= (c eps) F and phi += (c eps) pi on the whole field."""
    hmc = make_hmc(omelyan2(), 3)
    phi = np.random.default_rng(3).standard_normal((6, 6))
    pi = hmc.momenta(1)
    ref_phi, ref_pi = phi.copy(), pi.copy()
    for update in hmc.scheme.schedule(3):
        c = update.coefficient * hmc.step_size
        if update.kind == "P":
            ref_pi -= hmc.action.force(ref_phi) * c
        else:
            ref_phi += ref_pi * c
    monkeypatch.setattr(integrators, "CHUNK_SITES", chunk_sites)
    new_phi, new_pi = hmc.molecular_dynamics(phi, pi)
    assert new_phi.tobytes() == ref_phi.tobytes()
    assert new_pi.tobytes() == ref_pi.tobytes()
    with pytest.raises(ValueError, match="C-contiguous"):
        integrate(phi.T, pi, hmc.action.force, hmc.scheme, 3, hmc.step_size, np)
