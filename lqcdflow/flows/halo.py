"""Differentiable periodic halo exchange for tensors on a domain-decomposed lattice.

A rank holds the block x_mu in [o_mu, o_mu + l_mu) of the global periodic lattice (see
:class:`lqcdflow.parallel.Lattice`). A convolution of kernel size 2w + 1 needs, around that
block, the w planes beyond each face: the *halo*. The padding operator P maps the local block
(shape l) to the padded block (shape l + 2w on every lattice axis),

    (P phi)(y) = phi((o + y - w) mod L),   y_mu in [0, l_mu + 2 w),

i.e. exactly what ``torch.nn.functional.pad(phi_global, ..., mode="circular")`` gives on the
global tensor, cut to this rank's block plus its halo. P is linear; its adjoint P^T (the
backward pass) adds every halo cell's value to the cell that owns it:

    (P^T g)(x) = sum over padded cells y with (o + y - w) mod L = x of g(y),

so the gradient of a halo cell travels back to the owner rank and is added to its boundary
plane. Both are done axis by axis: P pads axis 0, then axis 1 of the already padded tensor
(corners included), ...; P^T undoes them in reverse order (last axis first), each step the
adjoint of the corresponding forward step.

Communication per axis mu: the first w planes go to the lower neighbour (they become its upper
halo), the last w planes to the upper neighbour (its lower halo), with nonblocking
``Isend``/``Irecv`` of contiguous host buffers (CUDA tensors are staged through host memory).
Directions with a single rank wrap locally with torch operations.
"""

import numpy as np
import torch
from mpi4py import MPI

_TAG_BASE = 4096  # above the tags of Lattice's own halo exchange (0 .. 2D - 1)


def _check(x, lattice, width):
    ndim = lattice.ndim
    if width < 0:
        raise ValueError(f"halo width must be >= 0, got {width}")
    if x.dim() < ndim or tuple(x.shape[x.dim() - ndim:]) != tuple(lattice.local_shape):
        raise ValueError(f"tensor of shape {tuple(x.shape)} does not end in the local lattice "
                         f"shape {tuple(lattice.local_shape)}")
    if any(width > l for l in lattice.local_shape):
        raise ValueError(f"halo width {width} exceeds a local extent "
                         f"{tuple(lattice.local_shape)}: only nearest-rank halos are supported")


def _to_host(t):
    """A contiguous NumPy copy (or view, on the CPU) of a tensor, for MPI."""
    return np.ascontiguousarray(t.detach().cpu().numpy())


def _exchange(lattice, mu, to_lower, to_upper):
    """Send ``to_lower`` to the lower and ``to_upper`` to the upper neighbour in direction mu.

    Returns ``(from_lower, from_upper)``: what the lower neighbour sent up and what the upper
    neighbour sent down, as tensors on the device of the inputs. With one rank in direction mu
    the neighbour is this rank itself: ``from_lower = to_upper``, ``from_upper = to_lower``.
    """
    if lattice.grid[mu] == 1:
        return to_upper, to_lower
    lower, upper = lattice.neighbours[mu]
    comm, device = lattice.comm, to_lower.device
    send_down, send_up = _to_host(to_lower), _to_host(to_upper)
    recv_from_upper, recv_from_lower = np.empty_like(send_down), np.empty_like(send_up)
    tag_down, tag_up = _TAG_BASE + 2 * mu, _TAG_BASE + 2 * mu + 1
    requests = [comm.Irecv(recv_from_upper, source=upper, tag=tag_down),
                comm.Irecv(recv_from_lower, source=lower, tag=tag_up),
                comm.Isend(send_down, dest=lower, tag=tag_down),
                comm.Isend(send_up, dest=upper, tag=tag_up)]
    MPI.Request.Waitall(requests)
    return (torch.from_numpy(recv_from_lower).to(device),
            torch.from_numpy(recv_from_upper).to(device))


def _pad(x, lattice, width):
    """P x: pad every lattice axis by ``width`` periodic neighbour planes (no autograd)."""
    first = x.dim() - lattice.ndim
    for mu in range(lattice.ndim):
        dim = first + mu
        n = x.shape[dim]
        from_lower, from_upper = _exchange(lattice, mu, x.narrow(dim, 0, width),
                                           x.narrow(dim, n - width, width))
        x = torch.cat([from_lower, x, from_upper], dim=dim)
    return x


def _pad_adjoint(g, lattice, width):
    """P^T g: fold every halo plane back onto the plane that owns it (no autograd)."""
    first = g.dim() - lattice.ndim
    for mu in reversed(range(lattice.ndim)):
        dim = first + mu
        n = g.shape[dim] - 2 * width
        to_lower, to_upper = g.narrow(dim, 0, width), g.narrow(dim, n + width, width)
        from_lower, from_upper = _exchange(lattice, mu, to_lower, to_upper)
        interior = g.narrow(dim, width, n).clone()
        # the lower neighbour's upper halo is our first planes, the upper's lower halo our last
        interior.narrow(dim, 0, width).add_(from_lower)
        interior.narrow(dim, n - width, width).add_(from_upper)
        g = interior
    return g


class HaloPad(torch.autograd.Function):
    """y = P x (periodic halo padding across ranks); backward: x_grad = P^T y_grad.

    The backward is itself the differentiable :class:`HaloPadAdjoint`, whose backward is P
    again, so higher derivatives work too.
    """

    @staticmethod
    def forward(ctx, x, lattice, width):
        ctx.lattice, ctx.width = lattice, width
        return _pad(x, lattice, width)

    @staticmethod
    def backward(ctx, grad):
        return HaloPadAdjoint.apply(grad, ctx.lattice, ctx.width), None, None


class HaloPadAdjoint(torch.autograd.Function):
    """x = P^T y (halo cells added onto their owners); backward: y_grad = P x_grad."""

    @staticmethod
    def forward(ctx, g, lattice, width):
        ctx.lattice, ctx.width = lattice, width
        return _pad_adjoint(g, lattice, width)

    @staticmethod
    def backward(ctx, grad):
        return HaloPad.apply(grad, ctx.lattice, ctx.width), None, None


def halo_pad(x, lattice, width=1):
    """Pad the lattice axes of a local tensor with the periodic neighbours' values.

    Parameters
    ----------
    x : torch.Tensor
        Shape ``(..., l_0, ..., l_{D-1})``, usually ``(batch, channels, *local_shape)``; the
        last D axes are this rank's block of the lattice. CPU or CUDA.
    lattice : lqcdflow.parallel.Lattice
        Supplies the Cartesian communicator, neighbours and process grid.
    width : int
        Halo planes on each side, 0 <= width <= min_mu l_mu.

    Returns
    -------
    torch.Tensor
        Shape ``(..., l_0 + 2 width, ..., l_{D-1} + 2 width)``, (P x)(y) = x((o + y - w) mod L).
        Collective: every rank of ``lattice.comm`` must call it, in the same order.

    Examples
    --------
    >>> from mpi4py import MPI
    >>> from lqcdflow.parallel import Lattice
    >>> lat = Lattice((4,), comm=MPI.COMM_SELF)
    >>> halo_pad(torch.arange(4.0).reshape(1, 1, 4), lat).tolist()
    [[[3.0, 0.0, 1.0, 2.0, 3.0, 0.0]]]
    """
    _check(x, lattice, width)
    if width == 0:
        return x
    return HaloPad.apply(x, lattice, width)


def shifted(padded, shape, width, displacement):
    """phi(x + d) on the local block of ``shape``, read from ``padded`` = halo_pad(phi, ...,
    ``width``) for a displacement d (``displacement``, |d_mu| <= width)."""
    index = tuple(slice(width + d, width + d + n) for d, n in zip(displacement, shape))
    return padded[(Ellipsis, *index)]


def halo_pad_adjoint(g, lattice, width=1):
    """P^T g, the adjoint of :func:`halo_pad` (differentiable); ``g`` has the padded shape."""
    ndim = lattice.ndim
    padded = tuple(l + 2 * width for l in lattice.local_shape)
    if g.dim() < ndim or tuple(g.shape[g.dim() - ndim:]) != padded:
        raise ValueError(f"tensor of shape {tuple(g.shape)} does not end in the padded local "
                         f"shape {padded}")
    if width == 0:
        return g
    _check(torch.empty(tuple(lattice.local_shape)), lattice, width)
    return HaloPadAdjoint.apply(g, lattice, width)
