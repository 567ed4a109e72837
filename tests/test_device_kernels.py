"""The CUDA C kernels (lqcdflow.kernels.device), compiled for the host from the same source as
for a GPU: the same bits as the array path for phi^4, U(1) and SU(N) on every process grid,
dtype and integrator; their cache and their errors. (On a GPU, tests/test_gpu.py runs them
there.)"""

import numpy as np
import pytest

from lqcdflow.kernels import device, phi4_cuda
from lqcdflow.kernels.compiled import numpy_trigonometry_differs
from lqcdflow.kernels.device import DeviceKernels
from lqcdflow.kernels.phi4_cuda import Phi4Device
from lqcdflow.kernels.select import md_kernels, unavailable
from lqcdflow.kernels.sun_cuda import SUNDevice
from lqcdflow.kernels.u1_cuda import U1Device
from lqcdflow.parallel.grid import valid_grids
from test_kernels import INTEGRATORS, make_theory, trajectory


DEVICE_KERNELS = {"phi4": Phi4Device, "u1": U1Device, "su2": SUNDevice, "su3": SUNDevice}


@pytest.mark.mpi
@pytest.mark.parametrize("name, shape, dtype", [
    ("phi4", (12,), "float64"), ("phi4", (4, 6), "float64"), ("phi4", (2, 4, 2, 4), "float64"),
    ("phi4", (40, 30), "float64"), ("phi4", (2, 6, 5), "float64"), ("phi4", (12,), "float32"),
    ("phi4", (2, 4, 2, 4), "float32"),
    ("u1", (4, 6), "float64"), ("u1", (2, 4, 2, 4), "float64"), ("u1", (6, 5, 4), "float64"),
    ("su2", (4, 6), "float64"), ("su2", (2, 4, 2, 4), "float64"),
    ("su3", (4, 6), "float64"), ("su3", (2, 4, 2, 4), "float64"), ("su3", (4, 2, 6), "float64")])
def test_cuda_kernels_on_the_host_are_bitwise_the_array_path(name, shape, dtype, comm):
    """(The gauge theories in float64 only: the host's sine and cosine are the C library's,
    NumPy's float32 ones are its own.)"""
    if name != "phi4":
        assert numpy_trigonometry_differs() is None
    for scheme, n_steps in INTEGRATORS[name]:
        start, *want = trajectory(make_theory(name, shape, dtype), "numpy", scheme, n_steps)
        assert np.all(np.isfinite(want[0])) and not np.array_equal(want[0], start)
        for grid in valid_grids(shape, comm.Get_size()):
            theory = make_theory(name, shape, dtype, comm, grid)
            kernels = DEVICE_KERNELS[name](theory, on_gpu=False)
            _, *got = trajectory(theory, kernels, scheme, n_steps)
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


PHI4_DEFINES = {"HOPPING": 1, "POTENTIAL": 2}


def test_the_host_library_is_compiled_once_per_source(monkeypatch):
    text = device.source(("phi4.cu",), np.float64, device.HOST_PRELUDE,
                         {"NDIM": 2, **PHI4_DEFINES})
    first = device.host_library(text)
    assert first.exists()
    monkeypatch.setattr(device.subprocess, "run", None)  # a second compilation would fail
    assert device.host_library(text) == first
    monkeypatch.undo()
    other = device.host_library(device.source(("phi4.cu",), np.float64, device.HOST_PRELUDE,
                                              {"NDIM": 3, **PHI4_DEFINES}))
    assert other.exists() and other != first


def test_a_broken_compiler_or_source_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler")
    with pytest.raises(RuntimeError, match="no-such-compiler .CC. not found"):
        DeviceKernels(("phi4.cu",), np.float64, False, {"NDIM": 2, **PHI4_DEFINES})
    monkeypatch.delenv("CC")
    (tmp_path / "fields.cu").write_text((device.SOURCE_DIR / "fields.cu").read_text())
    (tmp_path / "broken.cu").write_text("KERNEL void f(real *x) { x[0] = ; }\n")
    monkeypatch.setattr(device, "SOURCE_DIR", tmp_path)
    with pytest.raises(RuntimeError, match=r"compiling the host kernels failed: .*error") as e:
        DeviceKernels(("broken.cu",), np.float64, False, {"NDIM": 2})
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name, shape", [("phi4", (1 << 16, 1 << 15)),
                                         ("u1", (1 << 15, 1 << 15)),
                                         ("su3", (7723, 7723))])
def test_arrays_beyond_32_bit_indices_are_refused(name, shape):
    """2^31 values per array: phi^4's field, U(1)'s links (2 per site in 2D), SU(3)'s padded
    links (36 values per site in 2D: 7723^2 sites hold fewer than 2^31, 7725^2 more)."""
    theory = make_theory(name, shape, "float64")
    with pytest.raises(ValueError, match="index at most 2147483647 values per array; use more "
                                         "ranks"):
        DEVICE_KERNELS[name](theory, on_gpu=False)


def test_device_kernels_need_the_backend_they_run_on():
    with pytest.raises(ValueError, match="backend cupy"):
        Phi4Device(make_theory("phi4", (4, 4), "float64"), on_gpu=True)


def test_on_a_gpu_auto_keeps_the_array_path_and_compiled_says_which_have_none(monkeypatch):
    """What [run] kernels chooses on a GPU (faked: the NumPy backend said to be one, the
    device kernels' make a stand-in)."""
    phi4, ising = make_theory("phi4", (4, 4), "float64"), make_theory("ising", (4, 4), "float64")
    u1_float32 = make_theory("u1", (4, 4), "float32")
    monkeypatch.setattr(type(phi4.lattice.backend), "on_gpu", property(lambda self: True))
    monkeypatch.setattr(phi4_cuda, "make", lambda theory: ("CUDA kernels of", theory))
    assert md_kernels(phi4, "auto").name == "numpy"
    assert md_kernels(phi4, "compiled") == ("CUDA kernels of", phi4)
    assert unavailable(phi4) is None and unavailable(make_theory("u1", (4, 4), "float64")) is None
    assert "Ising has no CUDA molecular-dynamics kernels" in unavailable(ising)
    with pytest.raises(ValueError, match="kernels = 'compiled' cannot be used: Ising has no CUDA"):
        md_kernels(ising, "compiled")
    with pytest.raises(ValueError, match="U.1. CUDA kernels need .run. dtype = 'float64'"):
        md_kernels(u1_float32, "compiled")
    assert unavailable(make_theory("su3", (4, 4), "float64")) is None
    assert "SU(N) CUDA kernels need [run] dtype = 'float64'" in unavailable(
        make_theory("su3", (4, 4), "float32"))
    assert "no CUDA metropolis kernels" in unavailable(phi4, "make_metropolis", "metropolis")
