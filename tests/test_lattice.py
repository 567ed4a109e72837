"""Halo exchange, global sums and index maps against the undecomposed global array.

Marked ``mpi``: run on 1, 2 and 4 ranks, for every process grid the rank count allows.
"""

import math

import numpy as np
import pytest
from mpi4py import MPI

from lqcdflow.backend import make_backend
from lqcdflow.parallel import Lattice, lattice as lattice_module
from lqcdflow.parallel.grid import valid_grids
from lqcdflow.parallel.reduce import reproducible_sum

SHAPES = [(8,), (4, 8), (4, 2, 6), (2, 4, 2, 4), (8, 1)]


def lattices(shape, comm, dtype="float64"):
    """One Lattice per valid process grid of ``shape`` on ``comm``."""
    backend = make_backend("numpy", dtype)
    return [Lattice(shape, comm=comm, grid=g, backend=backend)
            for g in valid_grids(shape, comm.Get_size())]


def global_field(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.mpi
@pytest.mark.parametrize("shape", SHAPES)
def test_shift_and_neighbour_sum_equal_roll(shape, comm):
    phi = global_field(shape)
    for lat in lattices(shape, comm):
        local = lat.scatter(phi)
        for mu in range(len(shape)):
            for sign in (+1, -1):
                expected = np.roll(phi, -sign, axis=mu)[lat.local_slices()]
                assert np.array_equal(lat.shift(local, mu, sign), expected), (lat, mu, sign)
        expected = sum(np.roll(phi, s, axis=mu) for mu in range(len(shape)) for s in (1, -1))
        assert np.allclose(lat.neighbour_sum(local), expected[lat.local_slices()],
                           rtol=0, atol=1e-14)
        out = lat.zeros()
        assert lat.neighbour_sum(local, out=out) is out
        with pytest.raises(ValueError):
            lat.neighbour_sum(local, out=local)


@pytest.mark.mpi
@pytest.mark.parametrize("shape", [(8,), (4, 8), (4, 2, 6), (2, 4, 2, 4)])
def test_padded_fields_hold_every_neighbour_and_corner_on_every_grid(shape, comm):
    """Lattice.padded: the block with one layer around it, edges and corners included, equal
    to the periodic global field around the block (numpy.pad with wrap), site axes kept."""
    field = global_field(shape + (2,))
    wrapped = np.pad(field, [(1, 1)] * len(shape) + [(0, 0)], mode="wrap")
    for lat in lattices(shape, comm):
        padded = lat.padded(lat.scatter(field))
        window = tuple(slice(o, o + n + 2) for o, n in zip(lat.offset, lat.local_shape))
        assert padded.tobytes() == np.ascontiguousarray(wrapped[window]).tobytes(), lat


def ordered_neighbour_sum(phi):
    """(f(x+e_0) + f(x-e_0)) + (f(x+e_1) + f(x-e_1)) + ..., summed in this order with np.roll."""
    total = None
    for mu in range(phi.ndim):
        pair = np.roll(phi, -1, axis=mu) + np.roll(phi, 1, axis=mu)
        total = pair if total is None else total + pair
    return total


@pytest.mark.mpi
@pytest.mark.parametrize("slices_per_slab", [0.5, 2, 3])
@pytest.mark.parametrize("shape", [(7, 4, 6), (12, 2, 3, 4), (4, 3, 2), (2, 6, 4), (1, 6)])
def test_neighbour_sum_in_slabs_is_bitwise_on_every_grid(shape, slices_per_slab, comm,
                                                         monkeypatch):
    """Slabs of 1, 2 or 3 local time slices (SLAB_BYTES lowered; 0.5 slice rounds up to 1),
    so that there are several, the last one shorter (e.g. l_0 = 7) or the local time extent
    is 1 (L_0 = 1; L_0 = 2 or 4 split over 2 or 4 ranks): on every grid the result has the
    bits of the sum in the fixed order, and ``on_slab`` sees every slab once, finished."""
    for dtype in ("float64", "float32"):
        phi = global_field(shape, seed=8).astype(dtype)
        expected = ordered_neighbour_sum(phi)
        for lat in lattices(shape, comm, dtype):
            slice_bytes = phi.itemsize * lat.local_volume // lat.local_shape[0]
            monkeypatch.setattr(lattice_module, "SLAB_BYTES", int(slices_per_slab * slice_bytes))
            slabs = lat.slabs(phi.itemsize)
            assert len(slabs) == -(-lat.local_shape[0] // max(1, int(slices_per_slab)))
            local, out = lat.scatter(phi), lat.zeros()
            seen = []

            def on_slab(rows):
                assert np.array_equal(out[rows], expected[lat.local_slices()][rows])
                seen.append((rows.start, rows.stop))

            assert lat.neighbour_sum(local, out=out, on_slab=on_slab) is out
            assert out.tobytes() == expected[lat.local_slices()].tobytes(), (lat, dtype)
            assert sorted(seen) == [(r.start, r.stop) for r in slabs]
            assert lat.neighbour_sum(local).tobytes() == out.tobytes()


@pytest.mark.mpi
@pytest.mark.parametrize("shape", SHAPES)
def test_gather_scatter_and_site_index(shape, comm):
    phi = global_field(shape, seed=1)
    index = np.arange(math.prod(shape), dtype=np.uint64).reshape(shape)
    for lat in lattices(shape, comm):
        assert np.array_equal(lat.site_index, index[lat.local_slices()])
        gathered = lat.gather(lat.scatter(phi))
        if lat.rank == 0:
            assert np.array_equal(gathered, phi)
        else:
            assert gathered is None


@pytest.mark.mpi
@pytest.mark.parametrize("shape", SHAPES)
def test_global_sums_are_bitwise_decomposition_independent(shape, comm):
    phi = global_field(shape, seed=2) * 10.0 ** np.random.default_rng(3).integers(-8, 8, shape)
    single = Lattice(shape, comm=MPI.COMM_SELF)
    reference = single.sum(single.scatter(phi))
    reference_t = single.timeslice_sum(single.scatter(phi))
    assert abs(reference - math.fsum(phi.ravel())) <= 2 * np.spacing(abs(reference))
    assert np.allclose(reference_t, [math.fsum(s.ravel()) for s in phi], rtol=1e-15, atol=0)
    for lat in lattices(shape, comm, dtype="float32") + lattices(shape, comm):
        local = lat.scatter(phi.astype(lat.backend.dtype))
        total = lat.sum(local)
        if lat.backend.dtype == np.float64:
            assert total == reference  # bitwise
            assert np.array_equal(lat.timeslice_sum(local), reference_t)
        assert comm.allgather(total) == [total] * comm.Get_size()


def test_reproducible_sum_is_order_independent_and_exact():
    rng = np.random.default_rng(4)
    x = rng.standard_normal(10_000) * 10.0 ** rng.integers(-12, 12, 10_000)
    x[::7] *= -1
    total = reproducible_sum(x, MPI.COMM_SELF, x.size)
    assert float(total) == math.fsum(x)  # correctly rounded here: the residual is negligible
    for seed in range(3):
        perm = np.random.default_rng(seed).permutation(x)
        assert reproducible_sum(perm, MPI.COMM_SELF, x.size) == total
    assert reproducible_sum(np.zeros(5), MPI.COMM_SELF, 5) == 0.0
    assert np.isnan(reproducible_sum(np.array([1.0, np.nan]), MPI.COMM_SELF, 2))
    assert reproducible_sum(np.array([1.0, np.inf]), MPI.COMM_SELF, 2) == np.inf


def test_cancellation_is_exact():
    x = np.array([1e16, 1.0, -1e16, 1e-8])
    assert float(reproducible_sum(x, MPI.COMM_SELF, 4)) == 1.0 + 1e-8


def test_bad_lattices():
    with pytest.raises(ValueError, match="positive"):
        Lattice((4, 0), comm=MPI.COMM_SELF)


SITE_SHAPES = [((3,), np.float64), ((2, 3), np.complex128), ((2,), np.float32)]


def site_field(shape, site_shape, dtype, seed):
    gen = np.random.default_rng(seed)
    field = gen.standard_normal(tuple(shape) + site_shape)
    if np.issubdtype(dtype, np.complexfloating):
        field = field + 1j * gen.standard_normal(field.shape)
    return field.astype(dtype)


@pytest.mark.mpi
@pytest.mark.parametrize("site_shape, dtype", SITE_SHAPES)
@pytest.mark.parametrize("shape", [(4, 8), (4, 2, 6), (2, 4, 2, 4)])
def test_fields_with_a_site_shape_shift_sum_and_gather_on_every_grid(shape, site_shape, dtype,
                                                                      comm):
    """Link-like fields (site shape (D,) real or (N, M) complex): shifts and neighbour sums equal
    numpy.roll bitwise; gather/scatter round-trip; sums over everything, per component, per
    time slice and along lines are bitwise the same on every grid and equal the exact sums."""
    field = comm.bcast(site_field(shape, site_shape, dtype, seed=7))
    ndim = len(shape)
    single = Lattice(shape, comm=MPI.COMM_SELF, backend=make_backend("numpy", "float64"))
    reference = {"sum": single.sum(field), "site": single.site_sum(field),
                 "time": single.timeslice_sum(field),
                 "lines": [single.line_sum(field, mu) for mu in range(ndim)]}
    exact = field.astype(np.complex128).sum(axis=tuple(range(ndim)))
    assert np.allclose(reference["site"], exact, rtol=1e-6, atol=1e-6)
    assert np.allclose(reference["sum"], exact.sum(), rtol=1e-6, atol=1e-5)
    for grid in valid_grids(shape, comm.Get_size()):
        lat = Lattice(shape, comm=comm, grid=grid)
        local = lat.scatter(field)
        assert local.shape == lat.local_shape + site_shape and local.dtype == field.dtype
        assert lat.site_shape(local) == site_shape
        for mu in range(ndim):
            for sign in (+1, -1):
                expected = np.roll(field, -sign, axis=mu)[lat.local_slices()]
                assert lat.shift(local, mu, sign).tobytes() == expected.tobytes()
        ordered = sum((np.roll(field, -1, axis=mu) + np.roll(field, 1, axis=mu)
                       for mu in range(ndim)), np.zeros_like(field))
        assert np.allclose(lat.neighbour_sum(local), ordered[lat.local_slices()], rtol=0,
                           atol=1e-5)
        gathered = lat.gather(local)
        if lat.rank == 0:
            assert gathered.tobytes() == field.tobytes()
        assert lat.sum(local) == reference["sum"]
        assert lat.site_sum(local).tobytes() == reference["site"].tobytes()
        assert lat.timeslice_sum(local).tobytes() == reference["time"].tobytes()
        for mu in range(ndim):
            line = lat.line_sum(local, mu)
            expected = reference["lines"][mu][tuple(
                slice(o, o + n) if nu != mu else slice(None)
                for nu, (o, n) in enumerate(zip(lat.offset, lat.local_shape)))]
            assert line.tobytes() == np.ascontiguousarray(expected).tobytes(), (grid, mu)
        dof = lat.dof_index(site_shape)
        n = math.prod(site_shape)
        assert np.array_equal(dof, (single.dof_index(site_shape))[lat.local_slices()])
        assert np.array_equal(single.dof_index(site_shape).ravel(),
                              np.arange(math.prod(shape) * n))


@pytest.mark.mpi
def test_line_sums_take_one_exponent_for_the_whole_lattice(comm):
    """A line of tiny numbers next to a line of ones: with an exponent per sub-communicator the
    tiny line's digits would depend on which lines share one (the process grid)."""
    field = np.zeros((2, 2, 2))
    field[0, 0, 0] = 2.0**-150 * (1 + 2.0**-52)
    field[1, 1, 1] = 1.0
    field[:, 0, 1] = [3.0**-40, 5.0**-30]
    single = Lattice((2, 2, 2), comm=MPI.COMM_SELF)
    for mu in range(3):
        reference = single.line_sum(field, mu)
        for grid in valid_grids((2, 2, 2), comm.Get_size()):
            lat = Lattice((2, 2, 2), comm=comm, grid=grid)
            expected = reference[tuple(slice(o, o + n) if nu != mu else slice(None) for nu, (o, n)
                                       in enumerate(zip(lat.offset, lat.local_shape)))]
            assert lat.line_sum(lat.scatter(field), mu).tobytes() == expected.tobytes(), grid


@pytest.mark.mpi
def test_a_nan_or_inf_on_any_rank_makes_every_sum_nan_or_inf(comm):
    """Whichever rank holds it: a comparison-based maximum would keep or drop a NaN."""
    for where in np.ndindex(4, 4):
        for bad, check in ((np.nan, np.isnan), (-np.inf, np.isposinf)):
            field = np.ones((4, 4))
            field[where] = bad
            for grid in valid_grids((4, 4), comm.Get_size()):
                lat = Lattice((4, 4), comm=comm, grid=grid)
                assert check(lat.sum(lat.scatter(field))), (where, bad, grid)


def test_line_sums_equal_sums_along_the_axis():
    field = site_field((4, 6, 2), (2,), np.float64, seed=9)
    lat = Lattice((4, 6, 2), comm=MPI.COMM_SELF)
    for mu in range(3):
        assert np.allclose(lat.line_sum(field, mu), field.sum(axis=mu, keepdims=True),
                           rtol=1e-14, atol=1e-14)


def test_digit_layout_holds_the_largest_lattices():
    """2^33 sites x 36 numbers (SU(3) links on 256^3 x 512) sum without int64 overflow and
    keep at least 120 bits below the leading digit."""
    from lqcdflow.parallel.reduce import digit_layout

    count = 2**33 * 36
    width, nbins = digit_layout(count)
    assert count * 2**width < 2**63 and width * nbins >= 120
    x = np.random.default_rng(1).standard_normal(1000)
    assert float(reproducible_sum(x, MPI.COMM_SELF, count)) == math.fsum(x)
