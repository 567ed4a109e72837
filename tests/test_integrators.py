"""MD integrators over any theory: schedules, reversibility, the order of the energy violation,
nested time scales, and chunked updates."""

import numpy as np
import pytest
from mpi4py import MPI

from lqcdflow.kernels import blas
from lqcdflow.kernels.blas import axpy
from lqcdflow.mc.hmc import HMC
from lqcdflow.mc.integrators import (SCHEMES, Level, integrate, leapfrog, levels_of, omelyan2,
                                      omelyan4)
from lqcdflow.parallel import Lattice
from lqcdflow.rng import CounterRNG
from lqcdflow.theories.phi4 import Phi4, Phi4Couplings
from lqcdflow.theories.u1 import U1


def phi4(shape=(6, 6)):
    return Phi4(Lattice(shape, comm=MPI.COMM_SELF), Phi4Couplings.hopping(0.12, 0.6))


def u1(shape=(6, 6)):
    return U1(Lattice(shape, comm=MPI.COMM_SELF), 1.7)


THEORIES = {"phi4": phi4, "u1": u1}


def start(theory, seed):
    """A rough configuration of the theory (phi^4 Gaussian, U(1) Haar-random)."""
    return theory.hot_start(CounterRNG(seed))


def make_hmc(theory, scheme, n_steps, tau=1.0):
    return HMC.of(theory, scheme, n_steps, tau, CounterRNG(11))


def delta_h(hmc, field, draw):
    pi = hmc.momenta(draw)
    lat = hmc.theory.lattice
    h0 = lat.sum(hmc.hamiltonian_density(field, pi))
    return lat.sum(hmc.hamiltonian_density(*hmc.molecular_dynamics(field, pi))) - h0


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


@pytest.mark.parametrize("theory", sorted(THEORIES))
@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_reversibility(name, theory):
    hmc = make_hmc(THEORIES[theory](), SCHEMES[name](), 7)
    field0 = start(hmc.theory, 1)
    pi0 = hmc.momenta(1)
    field1, pi1 = hmc.molecular_dynamics(field0, pi0)
    assert np.max(np.abs(field1 - field0)) > 0.1
    field2, pi2 = hmc.molecular_dynamics(field1, -pi1)
    assert np.max(np.abs(field2 - field0)) < 1e-12
    assert np.max(np.abs(pi2 + pi0)) < 1e-12


@pytest.mark.parametrize("theory", sorted(THEORIES))
@pytest.mark.parametrize("name, order", [("leapfrog", 2), ("omelyan2", 2), ("omelyan4", 4)])
def test_energy_violation_scales_with_the_order(name, order, theory):
    """|Delta H| ~ eps^order at fixed trajectory length: the log-log slope is the order."""
    field = start(THEORIES[theory](), 2)
    if theory == "phi4":
        field *= 0.8
    steps = np.array([16, 32, 64])
    mean_dh = [np.mean([abs(delta_h(make_hmc(THEORIES[theory](), SCHEMES[name](), int(n)),
                                    field, draw)) for draw in range(1, 6)])
               for n in steps]
    slope = -np.polyfit(np.log(steps), np.log(mean_dh), 1)[0]
    assert slope == pytest.approx(order, abs=0.3), mean_dh


def test_nested_levels_reversible_and_second_order():
    """phi^4 split into hopping (outer) and potential (inner) forces: reversible, and Delta H
    falls as eps^2 when the outer steps are doubled (the inner step then halves too)."""
    theory = phi4()
    field = start(theory, 3) * 0.8
    hmc = make_hmc(theory, omelyan2(), [3, 2])
    assert [level.name for level in hmc.levels] == ["hopping", "potential"]
    pi0 = hmc.momenta(1)
    field1, pi1 = hmc.molecular_dynamics(field, pi0)
    field2, pi2 = hmc.molecular_dynamics(field1, -pi1)
    assert np.max(np.abs(field2 - field)) < 1e-12 and np.max(np.abs(pi2 + pi0)) < 1e-12
    steps = np.array([8, 16, 32])
    mean_dh = [np.mean([abs(delta_h(make_hmc(theory, leapfrog(), [int(n), 2]), field, d))
                        for d in range(1, 6)]) for n in steps]
    slope = -np.polyfit(np.log(steps), np.log(mean_dh), 1)[0]
    assert slope == pytest.approx(2, abs=0.3), mean_dh


def test_nested_levels_count_force_evaluations():
    """The inner level runs its trajectory in every Q of the outer one."""
    theory = phi4()
    calls = {"hopping": 0, "potential": 0}

    def counted(name, force):
        def wrapper(field, out=None):
            calls[name] += 1
            return force(field, out)
        return name, wrapper

    levels = [Level(leapfrog(), n, force, name)
              for n, (name, force) in zip((4, 3), [counted(*t) for t in theory.force_terms()])]
    field, pi = start(theory, 4), theory.momenta(CounterRNG(1), 1)
    integrate(field, pi, levels, 1.0, theory.update_field, np)
    assert calls == {"hopping": leapfrog().force_evaluations(4),
                     "potential": 4 * leapfrog().force_evaluations(3)}
    assert [level.name for level in levels_of(theory, leapfrog(), [4, 3])] == ["hopping",
                                                                               "potential"]
    assert levels_of(theory, leapfrog(), 4)[0].force == theory.force  # unsplit: the whole force
    with pytest.raises(ValueError, match="3 levels of steps for 2 force terms"):
        levels_of(theory, leapfrog(), [1, 2, 3])


def test_force_terms_add_up_to_the_force():
    """The nested levels integrate the same Hamiltonian: hopping + potential = force."""
    theory = phi4()
    field = start(theory, 5) * 0.8
    force_sum = theory.hopping_force(field) + theory.potential_force(field)
    assert np.allclose(force_sum, theory.force(field), rtol=0, atol=1e-13)


@pytest.mark.parametrize("chunk", [7, 36, 1 << 15])
def test_chunked_updates_have_the_bits_of_whole_field_updates(chunk, monkeypatch):
    """P and Q updates in chunks of CHUNK_NUMBERS (7 does not divide the 36 sites; 36 and
    more is one chunk) give the bits of pi -= (c eps) F and phi += (c eps) pi on the whole
    field."""
    hmc = make_hmc(phi4(), omelyan2(), 3)
    phi = np.random.default_rng(3).standard_normal((6, 6))
    pi = hmc.momenta(1)
    ref_phi, ref_pi = phi.copy(), pi.copy()
    for update in omelyan2().schedule(3):
        c = update.coefficient * hmc.step_size
        if update.kind == "P":
            ref_pi -= hmc.theory.force(ref_phi) * c
        else:
            ref_phi += ref_pi * c
    monkeypatch.setattr(blas, "CHUNK_NUMBERS", chunk)
    new_phi, new_pi = hmc.molecular_dynamics(phi, pi)
    assert new_phi.tobytes() == ref_phi.tobytes()
    assert new_pi.tobytes() == ref_pi.tobytes()
    with pytest.raises(ValueError, match="C-contiguous"):
        integrate(phi.T, pi, hmc.levels, 1.0, hmc.theory.update_field, np)
    with pytest.raises(ValueError, match="C-contiguous"):
        axpy(phi.T, 1.0, pi, np)
