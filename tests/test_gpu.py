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
from lqcdflow.theories.sun import SUN
from lqcdflow.theories.u1 import U1

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


@pytest.mark.mpi
@pytest.mark.parametrize("name, reference_backend, dtypes", [
    ("phi4", "numpy", ("float64", "float32")), ("u1", "cupy", ("float64",)),
    ("su2", "cupy", ("float64",)), ("su3", "cupy", ("float64",))])
def test_cuda_kernels_on_gpu_are_bitwise_the_array_path(name, reference_backend, dtypes, comm):
    """The CUDA kernels ([run] kernels = "compiled" on CuPy) on the GPU: the trajectories of
    the array path on every grid; phi^4's are NumPy's, the gauge theories' CuPy's (CUDA's sine
    and cosine). Their host build is checked in CI (tests/test_device_kernels.py)."""
    from lqcdflow.kernels.select import md_kernels
    from test_kernels import INTEGRATORS, THEORIES, trajectory

    shape = (8, 6, 4, 4)
    for scheme, n_steps in INTEGRATORS[name]:
        for dtype in dtypes:
            reference = THEORIES[name](Lattice(shape, comm=MPI.COMM_SELF,
                                               backend=make_backend(reference_backend, dtype)))
            _, *want = trajectory(reference, "numpy", scheme, n_steps)
            for grid in valid_grids(shape, comm.Get_size()):
                lattice = Lattice(shape, comm=comm, grid=grid, backend=make_backend("cupy", dtype))
                theory = THEORIES[name](lattice)
                kernels = md_kernels(theory, "compiled")
                assert kernels.name == "compiled (CUDA C on the GPU)"
                _, *got = trajectory(theory, kernels, scheme, n_steps)
                if comm.Get_rank() == 0:
                    for a, b in zip(want, got):
                        assert a.tobytes() == b.tobytes(), (grid, scheme, dtype)


@pytest.mark.mpi
def test_u1_chain_on_gpu_is_decomposition_independent_and_close_to_numpy(comm):
    """U(1) on CuPy: bitwise the same on every grid; against NumPy only close, since cos and
    sin of CuPy and NumPy may differ in the last bit."""
    def u1_chain(backend_name, on, grid):
        lat = Lattice((8, 4, 4), comm=on, grid=grid, backend=make_backend(backend_name))
        theory = U1(lat, 1.2)
        rng = CounterRNG(5)
        history = []
        state = run_chain(HMC.of(theory, omelyan2(), 6, 1.0, rng),
                          initial_state(theory, rng, "hot"), 8,
                          [lambda s, info: history.append((info.delta_H, info.accepted))])
        return lat.gather(state.field), history, theory.measure(state.field)

    ref_field, ref_history, _ = u1_chain("cupy", MPI.COMM_SELF, None)
    cpu_field, cpu_history, _ = u1_chain("numpy", MPI.COMM_SELF, None)
    assert [a for _, a in cpu_history] == [a for _, a in ref_history]
    assert np.allclose(cpu_field, ref_field, rtol=0, atol=1e-9)
    for grid in valid_grids((8, 4, 4), comm.Get_size()):
        field, history, values = u1_chain("cupy", comm, grid)
        assert history == ref_history
        assert isinstance(values["polyakov"], np.ndarray)
        if comm.Get_rank() == 0:
            assert field.tobytes() == ref_field.tobytes()


@pytest.mark.mpi
def test_su3_on_gpu_haar_start_is_numpys_and_the_chain_is_decomposition_independent(comm):
    """SU(3) on CuPy: the Haar start (exact operations only) is NumPy's bit for bit; the chain
    and the Wilson flow are bitwise the same on every grid and close to NumPy's."""
    shape = (4, 4, 2, 4)

    def su3_chain(backend_name, on, grid):
        lat = Lattice(shape, comm=on, grid=grid, backend=make_backend(backend_name))
        theory = SUN(lat, 3, 5.5, flow_t_max=0.2, flow_epsilon=0.1)
        rng = CounterRNG(7)
        start = lat.gather(theory.hot_start(rng))
        history = []
        state = run_chain(HMC.of(theory, omelyan2(), 5, 1.0, rng),
                          initial_state(theory, rng, "hot"), 4,
                          [lambda s, info: history.append((info.delta_H, info.accepted))])
        values = theory.measure(state.field)
        return start, lat.gather(state.field), history, values

    ref_start, ref_field, ref_history, ref_values = su3_chain("cupy", MPI.COMM_SELF, None)
    cpu_start, cpu_field, cpu_history, cpu_values = su3_chain("numpy", MPI.COMM_SELF, None)
    assert ref_start.tobytes() == cpu_start.tobytes()
    assert [a for _, a in cpu_history] == [a for _, a in ref_history]
    assert np.allclose(cpu_field, ref_field, rtol=0, atol=1e-9)
    assert np.allclose(cpu_values["flow_E_clover"], ref_values["flow_E_clover"], rtol=1e-9)
    for grid in valid_grids(shape, comm.Get_size()):
        _, field, history, values = su3_chain("cupy", comm, grid)
        assert history == ref_history
        assert list(values["flow_E_clover"]) == list(ref_values["flow_E_clover"])
        if comm.Get_rank() == 0:
            assert field.tobytes() == ref_field.tobytes()
