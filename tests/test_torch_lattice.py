"""The lattice's halo exchange and reproducible sums seen from torch (lqcdflow.flows
.torch_lattice) against global references, and the gradient all-reduce.

Marked ``mpi``: run on 1, 2 and 4 ranks, for every process grid the rank count allows.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mpi4py import MPI

from lqcdflow.flows import TorchLattice, allreduce_gradients, pad, sample_sum, shift
from lqcdflow.parallel import Lattice
from lqcdflow.parallel.grid import valid_grids

SHAPES = [(8,), (4, 8), (4, 2, 6), (4, 4, 4), (2, 2, 2)]


def lattices(shape, comm):
    return [Lattice(shape, comm=comm, grid=g) for g in valid_grids(shape, comm.Get_size())]


def local_block(global_tensor, lat, width=0):
    """This rank's block of a (..., *shape) tensor, with ``width`` extra planes each side of a
    tensor already circularly padded by ``width``."""
    sl = tuple(slice(o, o + l + 2 * width) for o, l in zip(lat.offset, lat.local_shape))
    return global_tensor[(Ellipsis, *sl)]


def circular(phi, width):
    """torch's circular padding of the lattice axes of a (batch, channels, *shape) tensor."""
    return F.pad(phi, [width] * (2 * (phi.dim() - 2)), mode="circular")


def global_inner(a, b, lat):
    """<a, b> over the global lattice, per sample, summed (a float, every rank)."""
    return sample_sum(a * b, lat).sum().item()


@pytest.mark.mpi
@pytest.mark.parametrize("shape", SHAPES)
def test_shift_and_pad_equal_the_global_references(shape, comm):
    """shift = torch.roll and pad = circular padding (any width, also wider than a rank's
    block: the shifts hand planes on through several ranks), on every grid."""
    gen = np.random.default_rng(1)
    phi = torch.from_numpy(comm.bcast(gen.standard_normal((2, 3) + shape)))
    for lat in lattices(shape, comm):
        block = local_block(phi, lat)
        for mu in range(len(shape)):
            for sign in (1, -1):
                got = shift(block, lat, mu, sign, first=2)
                assert torch.equal(got, local_block(torch.roll(phi, -sign, 2 + mu), lat))
        for width in (1, 3):
            if 2 * width >= min(shape):  # torch's circular padding needs width < extent
                continue
            got = pad(block, lat, width, first=2)
            assert torch.equal(got, local_block(circular(phi, width), lat, width)), width


@pytest.mark.mpi
@pytest.mark.parametrize("shape", SHAPES[1:3])
def test_adjoints_by_the_dot_product(shape, comm):
    """<P x, y> = <x, P^T y> with P^T the backward of pad (the halo cells' gradients go back
    to their owners), and likewise for shift; to rounding."""
    gen = np.random.default_rng(2)
    for lat in lattices(shape, comm):
        x = torch.from_numpy(gen.standard_normal((1,) + lat.local_shape)).requires_grad_()
        padded = pad(x, lat, 1)
        y = torch.from_numpy(gen.standard_normal(tuple(padded.shape)))
        (pty,) = torch.autograd.grad(padded, x, y)
        lhs = sample_sum(padded.detach() * y, lat).item()  # the padded sums hold each halo
        assert abs(lhs - global_inner(x.detach(), pty, lat)) < 1e-12 * max(1, abs(lhs))
        for mu in range(len(shape)):
            z = torch.from_numpy(gen.standard_normal((1,) + lat.local_shape))
            (tz,) = torch.autograd.grad(shift(x, lat, mu, +1), x, z)
            assert torch.equal(tz, shift(z, lat, mu, -1))


@pytest.mark.mpi
def test_gradcheck(comm):
    shape = (4, 2, 4)
    for k, lat in enumerate(lattices(shape, comm)):
        torch.manual_seed(lat.rank)
        x = torch.randn((1,) + lat.local_shape, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda t: pad(t, lat, 1), (x,))
        if k == 0:  # the double backward is the same shifts again: one grid is enough
            assert torch.autograd.gradgradcheck(lambda t: pad(t, lat, 1), (x,))
    # the sum over ranks feels every rank's perturbation at once: one process only
    alone = Lattice(shape, comm=MPI.COMM_SELF)
    x = torch.randn((2,) + shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: sample_sum(t * t, alone), (x,))


@pytest.mark.mpi
def test_sample_sums_are_reproducible(comm):
    """One sum per sample: exact to float64 (math.fsum), the same bits on every grid and
    whatever the other samples of the batch; the backward passes the gradient to every term
    without summing over ranks (each rank's loss is the same number)."""
    import math
    shape = (4, 8)
    gen = np.random.default_rng(3)
    big = comm.bcast(gen.standard_normal((3,) + shape) * np.array([1e-8, 1.0, 1e8])[:, None,
                                                                                  None])
    for lat in lattices(shape, comm):
        x = torch.from_numpy(local_block(big, lat).copy()).requires_grad_()
        total = sample_sum(x, lat)
        assert total.tolist() == [math.fsum(b.ravel()) for b in big]
        assert sample_sum(x[1:2], lat).item() == total[1].item()  # alone, the same bits
        (g,) = torch.autograd.grad((total * torch.tensor([2.0, 3.0, 4.0])).sum(), x)
        assert torch.equal(g[1], torch.full(lat.local_shape, 3.0, dtype=torch.float64))


@pytest.mark.mpi
def test_torch_lattice_is_a_lattice_for_theories(comm):
    lat = Lattice((4, 8), comm=comm)
    view = TorchLattice(lat)
    x = torch.ones((2,) + lat.local_shape, dtype=torch.float64)
    assert view.sum(x).tolist() == [32.0, 32.0]
    assert torch.equal(view.shift(x, 1, -1), x) and view.xp.cos is torch.cos
    assert view.volume == 32 and view.local_shape == lat.local_shape


@pytest.mark.mpi
def test_allreduce_gradients(comm):
    size, rank = comm.Get_size(), comm.Get_rank()
    module = torch.nn.Linear(2, 1)
    for p in module.parameters():
        p.grad = torch.full_like(p, float(rank + 1))
    allreduce_gradients(module, comm)
    for p in module.parameters():
        assert np.all(p.grad.numpy() == size * (size + 1) / 2)


def test_pad_errors():
    with pytest.raises(ValueError, match="halo width must be >= 0"):
        pad(torch.zeros(1, 4), Lattice((4,), comm=MPI.COMM_SELF), -1)
