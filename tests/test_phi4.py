"""phi^4 action: force against finite differences, the hopping <-> standard map, observables."""

import math

import numpy as np
import pytest
from mpi4py import MPI

from lqcdflow.parallel import Lattice, lattice as lattice_module
from lqcdflow.parallel.grid import valid_grids
from lqcdflow.theories.phi4 import (Phi4, Phi4Couplings, hopping_to_standard,
                                    standard_to_hopping)


def direct_action(phi, kappa, lam):
    """S_hop from its definition on the global array, with np.roll for the neighbours."""
    hop = sum(phi * np.roll(phi, -1, axis=mu) for mu in range(phi.ndim))
    return np.sum(-2 * kappa * hop + phi**2 + lam * (phi**2 - 1) ** 2)


@pytest.mark.parametrize("shape", [(6,), (4, 6), (4, 4, 2), (2, 2, 4, 2)])
def test_force_is_the_gradient_of_the_action(shape):
    lat = Lattice(shape, comm=MPI.COMM_SELF)
    action = Phi4(lat, Phi4Couplings.hopping(0.17, 0.9))
    phi = np.random.default_rng(5).standard_normal(shape)
    force = action.force(phi)
    h = 1e-5
    rng = np.random.default_rng(6)
    for _ in range(5):
        site = tuple(rng.integers(0, L) for L in shape)
        up, down = phi.copy(), phi.copy()
        up[site] += h
        down[site] -= h
        numeric = (action.action(up) - action.action(down)) / (2 * h)
        assert abs(numeric - force[site]) < 1e-6 * max(1.0, abs(force[site]))



@pytest.mark.mpi
@pytest.mark.parametrize("shape", [(7, 4, 6), (4, 2, 3, 2)])
def test_force_in_slabs_has_the_bits_of_the_whole_field_formula(shape, comm, monkeypatch):
    """The force evaluated slab by slab (slabs of one time slice, and the default size), on
    every grid: the bits of -h N + (4 c4 phi^2 + 2 c2) phi on the global field, N its
    neighbour sum, in float64 and float32."""
    c = Phi4Couplings.hopping(0.17, 0.9)
    for dtype in (np.float64, np.float32):
        phi = np.random.default_rng(9).standard_normal(shape).astype(dtype)
        n = Lattice(shape, comm=MPI.COMM_SELF).neighbour_sum(phi)
        expected = n * -c.h + (phi * phi * (4.0 * c.c4) + 2.0 * c.c2) * phi
        for slab_bytes in (1, lattice_module.SLAB_BYTES):
            monkeypatch.setattr(lattice_module, "SLAB_BYTES", slab_bytes)
            for grid in valid_grids(shape, comm.Get_size()):
                lat = Lattice(shape, comm=comm, grid=grid)
                force = Phi4(lat, c).force(lat.scatter(phi))
                assert force.tobytes() == expected[lat.local_slices()].tobytes(), (grid, dtype)

def test_action_matches_definition_and_standard_form_map():
    shape, kappa, lam = (4, 6, 2), 0.13, 0.7
    phi = np.random.default_rng(7).standard_normal(shape)
    lat = Lattice(shape, comm=MPI.COMM_SELF)
    s_hop = Phi4(lat, Phi4Couplings.hopping(kappa, lam)).action(phi)
    assert s_hop == pytest.approx(direct_action(phi, kappa, lam), rel=1e-13)

    m2, lam_std = hopping_to_standard(kappa, lam, len(shape))
    assert standard_to_hopping(m2, lam_std, len(shape)) == pytest.approx((kappa, lam), rel=1e-12)
    s_std = Phi4(lat, Phi4Couplings.standard(m2, lam_std, len(shape)))
    # S_hop[phi] = S_std[sqrt(kappa) phi] + lambda V
    assert s_hop == pytest.approx(s_std.action(math.sqrt(kappa) * phi) + lam * phi.size,
                                  rel=1e-12)
    direct_std = np.sum(sum((np.roll(phi, -1, mu) - phi) ** 2 for mu in range(3))
                        + m2 * phi**2 + lam_std * phi**4)
    assert s_std.action(phi) == pytest.approx(direct_std, rel=1e-12)


def test_standard_form_flow_tutorial_point():
    kappa, lam = standard_to_hopping(-4.0, 8.0, 2)
    assert (kappa, lam) == (0.25, 0.5)
    assert standard_to_hopping(1.0, 0.0, 2) == (0.2, 0.0)
    with pytest.raises(ValueError):
        standard_to_hopping(-4.0, 0.0, 2)


@pytest.mark.mpi
@pytest.mark.parametrize("shape", [(8, 4), (4, 2, 4)])
def test_observables_on_every_grid(shape, comm):
    kappa, lam = 0.11, 0.4
    phi = np.random.default_rng(8).standard_normal(shape)
    slices = phi.reshape(shape[0], -1).sum(axis=1)
    expected_corr = np.array([np.mean(slices * np.roll(slices, -t)) for t in range(shape[0])])
    expected_corr *= shape[0] / phi.size
    m = phi.sum()
    w = 2 * sum(np.sum(phi * np.roll(phi, -1, mu)) for mu in range(len(shape)))
    reference = None
    for grid in valid_grids(shape, comm.Get_size()):
        lat = Lattice(shape, comm=comm, grid=grid)
        obs = Phi4(lat, Phi4Couplings.hopping(kappa, lam)).measure(lat.scatter(phi))
        assert obs["action"] == pytest.approx(direct_action(phi, kappa, lam), rel=1e-13)
        assert obs["m"] == pytest.approx(m, rel=1e-13)
        assert obs["m2"] == pytest.approx(m * m, rel=1e-13)
        assert obs["m4"] == pytest.approx(m**4, rel=1e-13)
        assert obs["abs_m"] == abs(obs["m"])
        assert obs["W"] == pytest.approx(w, rel=1e-13)
        assert np.allclose(obs["correlator"], expected_corr, rtol=1e-13, atol=1e-15)
        flat = [obs[k] for k in ("action", "m", "W")] + list(obs["correlator"])
        reference = reference or flat
        assert flat == reference  # bitwise equal on every process grid
