"""The CUDA C kernels (lqcdflow.kernels.device), compiled for the host from the same source as
for a GPU: the same bits as the array path for phi^4 on every process grid, dtype and
integrator; their cache and their errors. (On a GPU, tests/test_gpu.py runs them there.)"""

import numpy as np
import pytest

from lqcdflow.kernels import device
from lqcdflow.kernels.device import DeviceKernels
from lqcdflow.kernels.phi4_cuda import Phi4Device
from lqcdflow.parallel.grid import valid_grids
from test_kernels import INTEGRATORS, make_theory, trajectory


@pytest.mark.mpi
@pytest.mark.parametrize("shape, dtype", [
    ((12,), "float64"), ((4, 6), "float64"), ((2, 4, 2, 4), "float64"), ((40, 30), "float64"),
    ((2, 6, 5), "float64"), ((12,), "float32"), ((2, 4, 2, 4), "float32")])
def test_cuda_kernels_on_the_host_are_bitwise_the_array_path(shape, dtype, comm):
    for scheme, n_steps in INTEGRATORS["phi4"]:
        start, *want = trajectory(make_theory("phi4", shape, dtype), "numpy", scheme, n_steps)
        assert np.all(np.isfinite(want[0])) and not np.array_equal(want[0], start)
        for grid in valid_grids(shape, comm.Get_size()):
            theory = make_theory("phi4", shape, dtype, comm, grid)
            _, *got = trajectory(theory, Phi4Device(theory, on_gpu=False), scheme, n_steps)
            if comm.Get_rank() == 0:
                for what, a, b in zip(("field", "momenta"), want, got):
                    assert a.tobytes() == b.tobytes(), (
                        f"{what} differs on grid {grid} ({scheme}, {n_steps}): max "
                        f"|diff| {np.abs(a - b).max()}")


def test_a_kernel_that_contracts_to_fma_is_not_bitwise(monkeypatch):
    """The test above can fail: the same kernels compiled with FMA contraction allowed (the
    host's default for C) give other bits, on a machine whose compiler contracts."""
    if not has_fma():
        pytest.skip("this CPU has no FMA instructions: contraction cannot change the bits")
    theory = make_theory("phi4", (40, 30), "float64")
    _, *want = trajectory(theory, "numpy", "omelyan2", 2)
    options = tuple(o for o in device.HOST_OPTIONS if o != "-ffp-contract=off")
    monkeypatch.setattr(device, "HOST_OPTIONS", options + ("-O3", "-march=native",
                                                           "-ffp-contract=fast"))
    theory = make_theory("phi4", (40, 30), "float64")
    _, *got = trajectory(theory, Phi4Device(theory, on_gpu=False), "omelyan2", 2)
    assert want[0].tobytes() != got[0].tobytes()


def has_fma():
    with open("/proc/cpuinfo") as cpuinfo:
        return " fma " in cpuinfo.read()


def test_the_host_library_is_compiled_once_per_source():
    first = device.host_library(device.source("phi4.cu", np.float64, device.HOST_PRELUDE))
    assert first.exists()
    assert device.host_library(device.source("phi4.cu", np.float64,
                                             device.HOST_PRELUDE)) == first
    other = device.host_library(device.source("phi4.cu", np.float32, device.HOST_PRELUDE))
    assert other != first


def test_a_broken_compiler_or_source_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler")
    with pytest.raises(RuntimeError, match="no-such-compiler .CC. not found"):
        DeviceKernels("phi4.cu", np.float64, on_gpu=False)
    monkeypatch.delenv("CC")
    (tmp_path / "broken.cu").write_text("KERNEL void f(real *x) { x[0] = ; }\n")
    monkeypatch.setattr(device, "SOURCE_DIR", tmp_path)
    with pytest.raises(RuntimeError, match="compiling the host kernels failed"):
        DeviceKernels("broken.cu", np.float64, on_gpu=False)


def test_too_many_sites_for_32_bit_indices_are_refused():
    kernels = DeviceKernels("phi4.cu", np.float64, on_gpu=False)
    with pytest.raises(ValueError, match="use more ranks"):
        kernels.launch("phi4_field_update", 1 << 31)


def test_device_kernels_need_the_backend_they_run_on():
    with pytest.raises(ValueError, match="backend cupy"):
        Phi4Device(make_theory("phi4", (4, 4), "float64"), on_gpu=True)
