"""Compiled kernels ([run] kernels, lqcdflow.kernels): the same bits as the array path for the
molecular dynamics of phi^4, U(1), SU(2) and SU(3) on every process grid, dtype and integrator
(nested included) and for the local updates of phi^4 and Ising, whole chains through `lqcdflow
run` (HMC, Langevin, Metropolis and heatbath, on other rank counts), and one-line errors where
there are none."""

import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from mpi4py import MPI

from lqcdflow.backend import make_backend
from lqcdflow.kernels import rng_numba
from lqcdflow.kernels.select import md_kernels, unavailable
from lqcdflow.kernels.sun_cuda import SUNDevice
from lqcdflow.mc.integrators import SCHEMES, levels_of
from lqcdflow.parallel import Lattice
from lqcdflow.parallel.grid import valid_grids
from lqcdflow.rng import CounterRNG
from lqcdflow.theories.ising import Ising
from lqcdflow.theories.phi4 import Phi4, Phi4Couplings
from lqcdflow.theories.sun import SUN
from lqcdflow.theories.u1 import U1
from lqcdflow.mc.hmc import ChainState
from lqcdflow.mc.local import LocalSampler
from runs import FLOW_RUN_FILE, ISING_RUN, RUN_FILE, SU3_RUN_FILE, U1_LOCAL_RUN, U1_RUN_FILE, \
    lqcdflow, one_line_error, series, write_run_file

# (scheme, n_steps): one level of the whole force, or (phi^4) hopping outside the potential
# (nested): every force term of the kernels (the schemes differ only in their coefficients)
INTEGRATORS = {"phi4": [("omelyan2", 2), ("leapfrog", [2, 3])], "u1": [("omelyan2", 2)],
               "su2": [("omelyan2", 2), ("leapfrog", 3)],
               "su3": [("omelyan2", 2), ("leapfrog", 3)]}
THEORIES = {"phi4": lambda lattice: Phi4(lattice, Phi4Couplings.hopping(0.18, 0.4)),
            "u1": lambda lattice: U1(lattice, 1.3),
            "su2": lambda lattice: SUN(lattice, 2, 2.2),
            "su3": lambda lattice: SUN(lattice, 3, 5.7),
            "ising": lambda lattice: Ising(lattice, 0.4)}


def make_theory(name, shape, dtype, comm=MPI.COMM_SELF, grid=None):
    lattice = Lattice(shape, comm=comm, grid=grid, backend=make_backend("numpy", dtype))
    return THEORIES[name](lattice)


def trajectory(theory, kernels, scheme, n_steps):
    """(start, field, momenta): a hot start, and the field and momenta after one trajectory
    of length 1 from it with momenta drawn by the kernels (a [run] kernels value or the
    kernels themselves), gathered."""
    rng = CounterRNG(5)
    md = md_kernels(theory, kernels) if isinstance(kernels, str) else kernels
    field, pi = theory.hot_start(rng), md.momenta(rng, 1)
    start = theory.lattice.gather(field)
    md.integrate(field, pi, levels_of(theory, SCHEMES[scheme](), n_steps), 1.0)
    return start, theory.lattice.gather(field), theory.lattice.gather(pi)


@pytest.mark.mpi
@pytest.mark.parametrize("name, shape, dtype", [
    ("phi4", (12,), "float64"), ("phi4", (4, 6), "float64"), ("phi4", (2, 4, 2, 4), "float64"),
    ("phi4", (40, 30), "float64"), ("phi4", (2, 6, 5), "float64"),
    ("phi4", (2, 40, 30), "float64"),
    ("phi4", (12,), "float32"), ("phi4", (4, 6), "float32"), ("phi4", (2, 4, 2, 4), "float32"),
    ("u1", (4, 6), "float64"), ("u1", (2, 4, 2, 4), "float64"),
    ("su2", (4, 6), "float64"), ("su2", (2, 4, 2, 4), "float64"),
    ("su3", (4, 6), "float64"), ("su3", (2, 4, 2, 4), "float64"),
    ("su3", (34, 34), "float64")])
def test_compiled_trajectories_are_bitwise_the_array_ones(name, shape, dtype, comm):
    for scheme, n_steps in INTEGRATORS[name]:
        start, *want = trajectory(make_theory(name, shape, dtype), "numpy", scheme, n_steps)
        assert np.all(np.isfinite(want[0])) and not np.array_equal(want[0], start)
        for grid in valid_grids(shape, comm.Get_size()):
            theory = make_theory(name, shape, dtype, comm, grid)
            _, *got = trajectory(theory, "compiled", scheme, n_steps)
            if comm.Get_rank() == 0:
                for what, a, b in zip(("field", "momenta"), want, got):
                    assert a.tobytes() == b.tobytes(), (
                        f"{what} differs on grid {grid} ({scheme}, {n_steps}): max "
                        f"|diff| {np.abs(a - b).max()}")


# Run with NUMBA_NUM_THREADS=2 (the thread pool is sized once per process), on the ranks of
# COMM_WORLD with process grid ``grid``: the compiled trajectory with two threads against the
# array path's, for test_threads_do_not_change_the_bits.
THREADED_TRAJECTORY = """
import importlib, sys
from mpi4py import MPI
sys.path.insert(0, {tests!r})
from test_kernels import INTEGRATORS, make_theory, trajectory
name, shape, grid = {name!r}, {shape!r}, {grid!r}
for scheme, n_steps in INTEGRATORS[name]:
    want = trajectory(make_theory(name, shape, "float64"), "numpy", scheme, n_steps)
    theory = make_theory(name, shape, "float64", MPI.COMM_WORLD, grid)
    md = importlib.import_module(theory.compiled_kernels).make(theory, 2)
    assert md.threads == 2, md.threads
    got = trajectory(theory, md, scheme, n_steps)
    for what, a, b in zip(("start", "field", "momenta"), want, got):
        assert MPI.COMM_WORLD.Get_rank() > 0 or a.tobytes() == b.tobytes(), (
            name, shape, scheme, what)
"""


@pytest.mark.parametrize("name, shape, grid", [
    ("phi4", (40, 30), None), ("phi4", (4, 2, 6), None), ("u1", (4, 6), None),
    ("su3", (2, 4, 2, 4), None), ("phi4", (80, 30), (2, 1))])
def test_threads_do_not_change_the_bits(name, shape, grid):
    """Compiled trajectories on two threads (phi^4's a kernel per update, where one thread
    runs the whole trajectory in one parallel region) are the array path's bits; phi^4 40 x 30
    is two chunks, so its fused P then Q runs as two blocks, the Q of each block's ends after
    both P, and so it does on each of two ranks of 80 x 30 (mpiexec -n 2), one update per
    call with the faces exchanged between them."""
    script = THREADED_TRAJECTORY.format(tests=os.path.dirname(__file__), name=name,
                                        shape=shape, grid=grid)
    ranks = [] if grid is None else ["mpiexec", "-n", str(math.prod(grid))]
    result = subprocess.run([*ranks, sys.executable, "-c", script], capture_output=True,
                            text=True, env={**os.environ, "NUMBA_NUM_THREADS": "2"},
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def special_momenta(n, sites):
    """su(N) momenta (sites, 1, N^2 - 1) that, times 0.7, take the exponential down each of
    its branches, site after site: zero; c_1 below C1_SERIES (the series); a small SU(2)
    angle (the sinc series); for SU(3) degenerate eigenvalues (T_8 only: theta = 0, w = 0,
    the sinc series) with c_0 > 0 and c_0 < 0, c_0 = 0 (T_3 only), and random momenta."""
    rng = np.random.default_rng(2)
    cases = [np.zeros(n * n - 1), np.full(n * n - 1, 1e-7), np.full(n * n - 1, 3e-4)]
    if n == 3:
        cases += [np.eye(8)[7] * 0.9, -np.eye(8)[7] * 0.9, np.eye(8)[2] * 1.3]
    cases += [rng.standard_normal(n * n - 1) for _ in range(3)]
    return np.array([cases[i % len(cases)] for i in range(sites)])[:, None, :]


@pytest.mark.parametrize("n, shape", [(2, (34, 34)), (3, (34, 34)), (3, (6, 8)), (3, (5, 8))])
@pytest.mark.parametrize("kernels", ["numba", "cuda on the host"])
def test_compiled_link_updates_take_every_branch_of_the_exponential(n, shape, kernels):
    """SU(N)'s compiled Q update (Numba's, and the CUDA kernels' host build) equals
    SUN.update_field bit for bit on momenta that reach every branch of the exponential, with
    the sites of a Numba thread's block in full and partial runs of LANES (34^2: 18 sites per
    block; 6x8: 16; 5x8: 13 or 14)."""
    theory = make_theory(f"su{n}", shape, "float64")
    field = theory.hot_start(CounterRNG(4))
    volume, ndim = field.shape[0] * field.shape[1], field.shape[2]
    pi = np.broadcast_to(special_momenta(n, volume), (volume, ndim, n * n - 1))
    pi = np.ascontiguousarray(pi.reshape(shape + (ndim, n * n - 1)))
    want, got = field.copy(), field.copy()
    theory.update_field(want, pi, 0.7)
    md = md_kernels(theory, "compiled") if kernels == "numba" else SUNDevice(theory, False)
    md.field_update(got, pi, 0.7)
    assert not np.array_equal(want, field) and want.tobytes() == got.tobytes()


def sweeps(theory, algorithm, kernels, n=4):
    """(start, field, [(acceptance, Delta S) per sweep], accepted) of n sweeps from a hot
    start, the fields gathered."""
    sampler = LocalSampler(theory, algorithm, 3, hits=2, width=1.5, kernels=kernels)
    assert sampler.kernels.name.startswith("compiled" if kernels == "compiled" else "numpy")
    state = ChainState(theory.hot_start(CounterRNG(1)))
    start, history = theory.lattice.gather(state.field), []
    for _ in range(n):
        state, info = sampler.step(state)
        history.append((info.acceptance, info.delta_S))
    return start, theory.lattice.gather(state.field), history, state.accepted


@pytest.mark.mpi
@pytest.mark.parametrize("name, algorithm, shape, dtype", [
    ("phi4", "metropolis", (4, 6), "float64"), ("phi4", "metropolis", (2, 4, 2, 4), "float32"),
    ("ising", "metropolis", (4, 6), "float64"), ("ising", "heatbath", (4, 6), "float64"),
    ("ising", "heatbath", (2, 4, 2, 4), "float32"), ("u1", "metropolis", (4, 6), "float64"),
    ("u1", "metropolis", (2, 4, 2, 4), "float64")])
def test_compiled_local_sweeps_are_bitwise_the_array_ones(name, algorithm, shape, dtype, comm):
    start, *want = sweeps(make_theory(name, shape, dtype), algorithm, "numpy")
    assert not np.array_equal(want[0], start) and 0 < want[1][-1][0] < 1
    for grid in valid_grids(shape, comm.Get_size()):
        _, *got = sweeps(make_theory(name, shape, dtype, comm, grid), algorithm, "compiled")
        if comm.Get_rank() == 0:
            assert want[0].tobytes() == got[0].tobytes(), grid
            assert want[1:] == got[1:], grid


def test_compiled_digits_of_reproducible_sums_are_the_array_ones(monkeypatch):
    """The compiled digits of reproducible sums (lqcdflow.kernels.reduce_numba, taken where
    compiled kernels run) are those of the array path, so the sums are the same bits, over
    magnitudes from subnormal to near overflow, in float64 and float32."""
    from lqcdflow.kernels.reduce_numba import digits
    from lqcdflow.parallel import reduce

    md_kernels(make_theory("phi4", (4, 4), "float64"), "compiled")
    assert reduce._compiled_digits is digits
    rng = np.random.default_rng(0)
    for x in [rng.standard_normal(1000), rng.standard_normal((8, 8, 8)).astype(np.float32),
              rng.standard_normal(10**5) * np.exp(rng.uniform(-700, 700, 10**5)),
              rng.standard_normal(1000) * 1e-310, np.array([1e308, -1e308, 5e-324]),
              np.array([5e-324, -1e-320]), np.zeros(7)]:
        exponent = np.full((1,) * x.ndim, np.frexp(np.max(np.abs(x)).astype(np.float64))[1])
        layout, axes = reduce.digit_layout(x.size), tuple(range(x.ndim))
        compiled = reduce._digits(x, exponent, *layout, axes, np)
        with monkeypatch.context() as patch:
            patch.setattr(reduce, "_compiled_digits", None)
            array = reduce._digits(x, exponent, *layout, axes, np)
        assert compiled.dtype == array.dtype and np.array_equal(compiled, array), x[:3]


def test_compiled_gaussians_are_the_counter_rngs():
    """rng_numba.normal gives CounterRNG.normal's bits: 10^5 numbers at site indices beyond
    2^32, for two seeds (one beyond 2^32), draws and streams; one changed key word changes
    them."""
    sites = np.arange(10**5, dtype=np.uint64) * np.uint64(977) + np.uint64(2**33 - 5)
    for seed, draw, stream in [(5, 1, 1), (2**40 + 3, 2**32 - 1, 4)]:
        rng, got = CounterRNG(seed), np.empty(sites.size)
        key = [np.uint64(word) for word in rng.key]
        rng_numba.normal(sites, np.uint64(draw), np.uint64(stream), *key, got)
        assert got.tobytes() == rng.normal(sites, draw, stream).tobytes()
        rng_numba.normal(sites, np.uint64(draw), np.uint64(stream), key[0] ^ np.uint64(1),
                         key[1], got)
        assert not np.any(got == rng.normal(sites, draw, stream))


def test_auto_falls_back_and_compiled_says_why_not(monkeypatch):
    """"auto" takes the compiled kernels where they can serve, else the array ones;
    "compiled" where they cannot is a ValueError that says why."""
    theory = make_theory("phi4", (4, 4), "float64")
    assert md_kernels(theory, "auto").name.startswith("compiled (Numba")
    assert md_kernels(make_theory("u1", (8, 8), "float64"), "auto").name != "numpy"
    assert md_kernels(make_theory("su3", (4, 4), "float64"), "auto").name != "numpy"
    for other, why in [(make_theory("u1", (4, 4), "float32"), "need [run] dtype = 'float64'"),
                       (make_theory("su2", (4, 4), "float32"), "need [run] dtype = 'float64'"),
                       (Ising(Lattice((4, 4), comm=MPI.COMM_SELF), 0.4), "Ising has no compiled")]:
        assert md_kernels(other, "auto").name == "numpy"
        with pytest.raises(ValueError, match=re.escape(why)):
            md_kernels(other, "compiled")
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba fails
    assert "numba is not installed" in unavailable(theory)
    assert md_kernels(theory, "auto").name == "numpy"


@pytest.mark.parametrize("name, text, replace", [
    ("hmc", RUN_FILE, {'integrator = "omelyan2"\nn_steps = 4': "n_steps = [2, 2]"}),
    ("mala", RUN_FILE, {'integrator = "omelyan2"\nn_steps = 4':
                        'algorithm = "langevin"\nepsilon = 0.02'}),
    ("u1", U1_RUN_FILE, {}), ("su3", SU3_RUN_FILE, {}),
    ("metropolis", RUN_FILE, {'integrator = "omelyan2"\nn_steps = 4':
                              'algorithm = "metropolis"\nhits = 2\nwidth = 1.5'}),
    ("heatbath", RUN_FILE, ISING_RUN), ("u1 metropolis", RUN_FILE, U1_LOCAL_RUN)])
def test_run_file_kernels_change_the_speed_not_the_chain(tmp_path, name, text, replace):
    """`lqcdflow run` with kernels = "compiled" on 2 ranks writes the chain of kernels =
    "numpy" on 1 rank, bit for bit (phi^4 HMC with nested levels, MALA, U(1) and SU(3) HMC,
    phi^4 and U(1) Metropolis and Ising heatbath sweeps), and says which kernels ran."""
    chains = {}
    for kernels, ranks in [("numpy", None), ("compiled", 2)]:
        run = write_run_file(tmp_path / f"{kernels}.toml", 30, text=text,
                             **replace, **{'kernels = "numpy"': f'kernels = "{kernels}"'})
        result = lqcdflow(["run", str(run)], ranks=ranks)
        assert result.returncode == 0, result.stderr
        assert f"kernels: {kernels}" in result.stdout
        chains[kernels] = series(run.with_suffix(".h5"))
    assert chains["compiled"] == chains["numpy"]
    if "mc/accepted" in chains["numpy"]:
        accepted = np.frombuffer(chains["numpy"]["mc/accepted"], np.int8)
        assert accepted.mean() > 0 and (name != "mala" or accepted.mean() < 1)
    else:
        assert 0 < np.frombuffer(chains["numpy"]["mc/acceptance"]).mean() < 1


@pytest.mark.parametrize("text, replace, message", [
    (U1_RUN_FILE, {'kernels = "numpy"': 'kernels = "compiled"\ndtype = "float32"'},
     "[run] kernels = 'compiled' cannot be used: the U(1) kernels need [run] dtype = "
     "'float64'"),
    (None, {**U1_LOCAL_RUN, 'algorithm = "metropolis"\nwidth = 2.0': 'algorithm = "heatbath"',
            'kernels = "numpy"': 'kernels = "compiled"'},
     "[run] kernels = 'compiled' cannot be used: U1 has no compiled heatbath kernels"),
    (FLOW_RUN_FILE, {"seed = 11": 'seed = 11\nkernels = "compiled"'},
     "algorithm = 'nmcmc' has no compiled kernels"),
    (None, {'kernels = "numpy"': 'kernels = "fast"'}, "[run] kernels"),
])
def test_compiled_kernels_where_there_are_none_is_a_one_line_error(tmp_path, text, replace,
                                                                   message):
    run = write_run_file(tmp_path / "bad.toml", **({"text": text} if text else {}), **replace)
    one_line_error(lqcdflow(["run", str(run)]), message)


def test_the_kernel_cache_is_keyed_by_every_source_they_compile_from(tmp_path, monkeypatch):
    """Numba checks a cached function against its own file only; lqcdflow.kernels.jit keys the
    cache directory by all the kernel sources, lqcdflow.rng and lqcdflow.groups.su_n, so a
    change in any of them (a callee in another module, a constant) starts a fresh cache instead
    of running stale machine code."""
    from lqcdflow.kernels import compiled, jit, phi4_numba, sun_numba, u1_numba

    kernels = [phi4_numba._momentum_update, phi4_numba._trajectory, compiled.field_update,
               rng_numba.normal, u1_numba._momentum_update, u1_numba._metropolis,
               sun_numba._momentum_update, sun_numba._field_update]
    # (Numba adds a subdirectory of the source's directory)
    assert all(k._cache._cache_path.startswith(jit.CACHE_DIR + os.sep) for k in kernels)
    assert [p.name for p in jit.SOURCES[-2:]] == ["rng.py", "su_n.py"] and len(jit.SOURCES) > 5
    copies = []
    for path in jit.SOURCES:
        copies.append(tmp_path / path.name)
        copies[-1].write_bytes(path.read_bytes())
    monkeypatch.setattr(jit, "SOURCES", tuple(copies))
    assert jit._cache_dir() == jit.CACHE_DIR
    for copy in copies[-2:]:  # e.g. rng.py's constants, or su_n.py's kinds of generators
        copy.write_bytes(copy.read_bytes() + b"\n")
        changed = jit._cache_dir()
        assert changed != jit.CACHE_DIR
        assert changed.rsplit("-", 1)[0] == jit.CACHE_DIR.rsplit("-", 1)[0]
