"""Decomposition invariance: the same seed gives bitwise the same Markov chain on any number
of ranks and any process grid (run under mpiexec with 1, 2 and 4 ranks)."""

import numpy as np
import pytest
from mpi4py import MPI

from lqcdflow.backend import make_backend
from lqcdflow.mc.driver import run_chain
from lqcdflow.mc.hmc import HMC, initial_state
from lqcdflow.mc.integrators import SCHEMES
from lqcdflow.parallel import Lattice
from lqcdflow.parallel.grid import valid_grids
from lqcdflow.rng import CounterRNG
from lqcdflow.theories.phi4 import Phi4, Phi4Couplings


def chain(lattice, scheme, n_traj=12, seed=99):
    """Run a hot-start HMC chain; return (global field on rank 0, [(delta_H, accepted)])."""
    action = Phi4(lattice, Phi4Couplings.hopping(0.18, 1.1))
    rng = CounterRNG(seed)
    hmc = HMC.of(action, SCHEMES[scheme](), 3, 1.0, rng)
    history = []
    state = run_chain(hmc, initial_state(action, rng, "hot"), n_traj,
                      [lambda s, info: history.append((info.delta_H, info.accepted))])
    return lattice.gather(state.field), history


@pytest.mark.mpi
@pytest.mark.parametrize("shape, scheme, dtype", [
    ((8, 4), "omelyan2", "float64"),
    ((4, 2, 4), "leapfrog", "float64"),
    ((2, 4, 2, 4), "omelyan4", "float64"),
    ((8, 4), "omelyan2", "float32"),
])
def test_chain_is_bitwise_identical_on_every_grid(shape, scheme, dtype, comm):
    backend = make_backend("numpy", dtype)
    ref_phi, ref_history = chain(Lattice(shape, comm=MPI.COMM_SELF, backend=backend), scheme)
    assert any(a for _, a in ref_history), ref_history
    for grid in valid_grids(shape, comm.Get_size()):
        phi, history = chain(Lattice(shape, comm=comm, grid=grid, backend=backend), scheme)
        assert history == ref_history, grid
        if comm.Get_rank() == 0:
            assert phi.dtype == ref_phi.dtype
            assert phi.tobytes() == ref_phi.tobytes(), grid


@pytest.mark.mpi
def test_momenta_are_drawn_per_global_site(comm):
    shape = (4, 6)
    rng = CounterRNG(5)
    reference = rng.normal(np.arange(24, dtype=np.uint64).reshape(shape), 3, 1)
    for grid in valid_grids(shape, comm.Get_size()):
        lat = Lattice(shape, comm=comm, grid=grid)
        action = Phi4(lat, Phi4Couplings.hopping(0.1, 0.0))
        pi = HMC.of(action, SCHEMES["leapfrog"](), 1, 1.0, rng).momenta(3)
        assert np.array_equal(pi, reference[lat.local_slices()])
