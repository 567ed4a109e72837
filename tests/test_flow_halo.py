"""Differentiable halo exchange and all-reduce of lqcdflow.flows against global references.

Marked ``mpi``: run on 1, 2 and 4 ranks, for every process grid the rank count allows.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mpi4py import MPI

from lqcdflow.flows import allreduce_gradients, allreduce_sum, halo_pad, halo_pad_adjoint
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


def global_inner(a, b, comm):
    return allreduce_sum((a * b).sum(), comm).item()


@pytest.mark.mpi
@pytest.mark.parametrize("shape", SHAPES)
def test_halo_pad_equals_circular_pad(shape, comm):
    gen = torch.Generator().manual_seed(1)
    phi = torch.randn((2, 3) + shape, generator=gen, dtype=torch.float64)
    for lat in lattices(shape, comm):
        for width in (0, 1, 2):
            if width > min(lat.local_shape):
                continue
            expected = F.pad(phi, (width,) * (2 * len(shape)), mode="circular")
            got = halo_pad(local_block(phi, lat), lat, width)
            assert torch.equal(got, local_block(expected, lat, width)), (lat, width)


@pytest.mark.mpi
def test_halo_pad_leading_axes_and_float32(comm):
    shape = (4, 8)
    phi = torch.randn((3,) + shape, dtype=torch.float32)
    phi = torch.from_numpy(comm.bcast(phi.numpy()))
    for lat in lattices(shape, comm):
        got = halo_pad(local_block(phi, lat), lat, 1)
        expected = F.pad(phi.unsqueeze(0), (1, 1, 1, 1), mode="circular")[0]
        assert got.dtype == torch.float32
        assert torch.equal(got, local_block(expected, lat, 1))


@pytest.mark.mpi
@pytest.mark.parametrize("shape", SHAPES)
def test_halo_pad_adjoint_dot_product(shape, comm):
    """<P x, y> = <x, P^T y> with global inner products, for P^T from autograd and directly."""
    rank = comm.Get_rank()
    for lat in lattices(shape, comm):
        for width in (1, 2):
            if width > min(lat.local_shape):
                continue
            gen = torch.Generator().manual_seed(100 + rank)
            x = torch.randn((2, 1) + lat.local_shape, generator=gen, dtype=torch.float64,
                            requires_grad=True)
            px = halo_pad(x, lat, width)
            y = torch.randn(px.shape, generator=gen, dtype=torch.float64)
            (pty,) = torch.autograd.grad(px, x, grad_outputs=y)
            lhs = global_inner(px.detach(), y, comm)
            rhs = global_inner(x.detach(), pty, comm)
            assert abs(lhs - rhs) <= 1e-12 * (abs(lhs) + 1), (lat, width, lhs, rhs)
            assert torch.allclose(halo_pad_adjoint(y, lat, width), pty, rtol=0, atol=1e-14)


@pytest.mark.mpi
@pytest.mark.parametrize("shape", [(4,), (2, 4), (2, 2, 2)])
def test_halo_pad_gradcheck(shape, comm):
    """torch.autograd.gradcheck (and gradgradcheck) on every rank at once.

    Every rank perturbs the same local element at the same time; on a periodic process grid
    the numerical and analytical Jacobians of this simultaneous perturbation agree exactly when
    the backward is the adjoint of the forward.
    """
    for lat in lattices(shape, comm):
        gen = torch.Generator().manual_seed(7 + comm.Get_rank())
        x = torch.randn((1, 1) + lat.local_shape, generator=gen, dtype=torch.float64,
                        requires_grad=True)
        assert torch.autograd.gradcheck(lambda t: halo_pad(t, lat, 1), (x,))
        assert torch.autograd.gradgradcheck(lambda t: halo_pad(t, lat, 1), (x,))


def test_halo_pad_gradcheck_global_serial():
    """gradcheck of the map phi_global -> P(phi) on a single rank, width 1 and 2."""
    lat = Lattice((3, 4), comm=MPI.COMM_SELF)
    x = torch.randn((2, 1, 3, 4), dtype=torch.float64, requires_grad=True)
    for width in (1, 2):
        assert torch.autograd.gradcheck(lambda t: halo_pad(t, lat, width), (x,))


def test_halo_pad_errors():
    lat = Lattice((4, 2), comm=MPI.COMM_SELF)
    with pytest.raises(ValueError, match="local lattice shape"):
        halo_pad(torch.zeros(1, 4, 3), lat)
    with pytest.raises(ValueError, match="exceeds a local extent"):
        halo_pad(torch.zeros(1, 4, 2), lat, 3)


@pytest.mark.mpi
def test_allreduce_sum_and_gradients(comm):
    size, rank = comm.Get_size(), comm.Get_rank()
    x = torch.tensor([1.0, float(rank)], dtype=torch.float64, requires_grad=True)
    y = allreduce_sum(x, comm)
    assert y.tolist() == [float(size), size * (size - 1) / 2]
    (g,) = torch.autograd.grad((y * torch.tensor([2.0, 3.0], dtype=torch.float64)).sum(), x)
    assert g.tolist() == [2.0, 3.0]  # passed through, not multiplied by the rank count
    module = torch.nn.Linear(2, 1)
    for p in module.parameters():
        p.grad = torch.full_like(p, float(rank + 1))
    allreduce_gradients(module, comm)
    for p in module.parameters():
        assert np.all(p.grad.numpy() == size * (size + 1) / 2)
