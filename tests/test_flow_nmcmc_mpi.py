"""Flow MCMC on a decomposed lattice is exact: the free-field check of
test_flow_train.py::test_nmcmc_is_exact_for_free_field with the independence Metropolis chain
run on a 2D lattice split over every rank of COMM_WORLD (marked ``mpi``: run serially and with
``mpiexec -n 2`` and ``-n 4``).

The flow is trained on MPI.COMM_SELF by every rank alike (training is decomposition
independent, see test_flow_train.py) and its parameters are loaded into the decomposed flow:
that keeps the many small collectives of training out of runs with more ranks than cores,
where each one costs a scheduler time slice.
"""

import pytest
import torch
from flow_helpers import ScaledLogJacobian, free_field_z_scores, setup, spec_for
from mpi4py import MPI

from lqcdflow.flows import cosine_lr, train
from lqcdflow.parallel import Lattice
from lqcdflow.parallel.grid import valid_grids

SHAPE, M2_FREE = (4, 4), 1.0
PROPOSALS = 40000
BATCH = 10000  # proposals per flow evaluation: few collectives per chain
Z_MAX = 4.5


def decomposed_lattice(comm):
    """SHAPE over all ranks, split in as many directions as possible (so halo corners are
    exchanged across ranks too)."""
    grid = max(valid_grids(SHAPE, comm.Get_size()), key=lambda g: sum(n > 1 for n in g))
    return Lattice(SHAPE, comm=comm, grid=grid)


@pytest.fixture(scope="module")
def proposal_flow():
    """A flow briefly trained on the free field (the same on every rank), on the decomposed
    lattice, and that lattice."""
    spec = spec_for(SHAPE, m2=M2_FREE, lam=0.0, n_layers=4)
    single = Lattice(SHAPE, comm=MPI.COMM_SELF)
    trained, opt = setup(spec, single, mult=1.0)
    train(trained, opt, spec.target(single), 64, 200, cosine_lr(1e-2, 200))
    lat = decomposed_lattice(MPI.COMM_WORLD)
    flow = spec.build(lat)
    flow.load_state_dict(trained.state_dict())
    return flow, lat


def z_scores(proposal_flow, log_jacobian_scale):
    flow, lat = proposal_flow
    with torch.no_grad():
        return free_field_z_scores(ScaledLogJacobian(flow, log_jacobian_scale), lat, M2_FREE,
                                   PROPOSALS, batch=BATCH)


@pytest.mark.mpi
def test_decomposed_nmcmc_is_exact_for_free_field(proposal_flow):
    """<M^2>/V = 1/(2 m2) and <S>/V = 1/2 within Z_MAX Gamma-method errors (chain seeds 9 to
    13: |z| < 1.2, the same on 1 and 4 ranks)."""
    z = z_scores(proposal_flow, 1.0)
    assert max(map(abs, z)) < Z_MAX, (proposal_flow[1].grid, z)


@pytest.mark.mpi
def test_decomposed_nmcmc_with_wrong_log_jacobian_is_detected(proposal_flow):
    """The same chain with log|J| scaled by 1/2, as if it were summed over half the lattice,
    misses <S>/V = 1/2 (seeds 9 to 13: z = 6.9 to 8.0), so the check above can fail."""
    z = z_scores(proposal_flow, 0.5)
    assert max(map(abs, z)) > Z_MAX, (proposal_flow[1].grid, z)
