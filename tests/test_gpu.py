"""CuPy backend: the same bits as NumPy. Needs CuPy and a CUDA device; skipped (with this
reason) where there is none, as in CI."""

import numpy as np
import pytest
from mpi4py import MPI

from lqcdflow.backend import cupy_available, make_backend
from lqcdflow.mc.driver import run_chain
from lqcdflow.mc.hmc import HMC, initial_state
from lqcdflow.mc.integrators import omelyan2
from lqcdflow.parallel import Lattice
from lqcdflow.parallel.grid import valid_grids
from lqcdflow.rng import STREAM_MOMENTA, CounterRNG
from lqcdflow.theories.phi4 import Phi4, Phi4Couplings

pytestmark = pytest.mark.skipif(not cupy_available(),
                                reason="needs CuPy and a CUDA device; none on this machine")


def test_random_numbers_are_bitwise_equal_on_gpu():
    import cupy

    sites = np.arange(100_000, dtype=np.uint64)
    rng = CounterRNG(12345)
    on_cpu = rng.normal(sites, 3, STREAM_MOMENTA)
    on_gpu = rng.normal(cupy.asarray(sites), 3, STREAM_MOMENTA, xp=cupy)
    assert on_cpu.tobytes() == cupy.asnumpy(on_gpu).tobytes()


def chain(backend_name, comm, grid, gpu_aware=False):
    lat = Lattice((8, 8, 4), comm=comm, grid=grid, backend=make_backend(backend_name),
                  gpu_aware_mpi=gpu_aware)
    action = Phi4(lat, Phi4Couplings.hopping(0.18, 1.1))
    rng = CounterRNG(3)
    history = []
    state = run_chain(HMC.of(action, omelyan2(), 4, 1.0, rng), initial_state(action, rng, "hot"),
                      10, [lambda s, info: history.append((info.delta_H, info.accepted))])
    return lat.gather(state.field), history


@pytest.mark.mpi
def test_cupy_chain_equals_numpy_chain_bitwise(comm):
    ref_phi, ref_history = chain("numpy", MPI.COMM_SELF, None)
    for grid in valid_grids((8, 8, 4), comm.Get_size()):
        phi, history = chain("cupy", comm, grid)
        assert history == ref_history
        if comm.Get_rank() == 0:
            assert phi.tobytes() == ref_phi.tobytes()
