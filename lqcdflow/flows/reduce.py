"""Differentiable sums over ranks, and the gradient all-reduce of model parallelism.

Convention (no double counting)
-------------------------------
Every rank holds the same parameters theta and its block of every field. A global quantity,
e.g. the log-density of sample b,

    log q_b = sum_r a_{r,b}(theta),   a_{r,b} = rank r's local contribution,

is formed with :func:`allreduce_sum`, so it is identical on all ranks, and the loss
L = f(log q, S) is then computed identically on every rank from such all-reduced values only.

Backward on rank r starts from dL/dL = 1 (the same on every rank). The backward of the
all-reduce passes dL/d(log q_b) unchanged to rank r's a_{r,b}, because
d(sum_r' a_r')/d a_r = 1; it does *not* sum over ranks (that would count the loss once per
rank). Rank r's backward then yields only the part of dL/d theta that flows through its own
local computations (the halo exchange's backward sends gradients of halo cells to the rank that
owns them, so each site's field is differentiated exactly once, on its owner):

    g_r = sum_b dL/d(log q_b) d a_{r,b}/d theta,   dL/d theta = sum_r g_r.

:func:`allreduce_gradients` forms that sum, after which every rank holds the single-process
gradient and an identical optimiser step keeps the parameters identical.

Caveat: a parameter used *after* the all-reduce (in the part of the loss computed redundantly
on every rank) would be counted once per rank by that sum; keep parameters out of it.
"""

import numpy as np
import torch
from mpi4py import MPI


def _allreduce_host(array, comm):
    """In-place MPI_SUM of a contiguous NumPy array."""
    comm.Allreduce(MPI.IN_PLACE, array, op=MPI.SUM)
    return array


class AllreduceSum(torch.autograd.Function):
    """y = sum_r x_r over the ranks of ``comm`` (elementwise); backward: x_grad = y_grad.

    The forward is MPI_SUM (the same value on every rank, up to the summation order of the MPI
    library). The backward is the identity since d(sum_r' x_r')/dx_r = 1 and the incoming
    gradient is the same on every rank (see the module docstring).
    """

    @staticmethod
    def forward(ctx, x, comm):
        host = np.array(x.detach().cpu().numpy(), order="C", copy=True)
        return torch.from_numpy(_allreduce_host(host, comm)).to(x.device)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def allreduce_sum(x, comm):
    """Differentiable elementwise sum of ``x`` over the ranks of ``comm``.

    Parameters
    ----------
    x : torch.Tensor
        Any shape, the same on every rank (CPU or CUDA; staged through host memory).
    comm : mpi4py communicator

    Returns
    -------
    torch.Tensor
        sum_r x_r, identical on all ranks. With one rank, x itself (no copy, no MPI call).

    Examples
    --------
    >>> from mpi4py import MPI
    >>> allreduce_sum(torch.tensor([1.0, 2.0]), MPI.COMM_SELF).tolist()
    [1.0, 2.0]
    """
    if comm.Get_size() == 1:
        return x
    return AllreduceSum.apply(x, comm)


def allreduce_gradients(module, comm):
    """Sum the parameter gradients of ``module`` over the ranks of ``comm``, in place.

    After a backward pass of a loss built by the convention of this module, p.grad on each rank
    is g_r, rank r's local contribution; afterwards it is dL/d theta = sum_r g_r on every rank.
    Gradients are flattened into one buffer per dtype (one all-reduce each). Every rank must
    have gradients for the same parameters (those with ``p.grad is None`` are skipped).

    Parameters
    ----------
    module : torch.nn.Module
    comm : mpi4py communicator
    """
    if comm.Get_size() == 1:
        return
    params = [p for p in module.parameters() if p.grad is not None]
    for dtype in sorted({p.grad.dtype for p in params}, key=str):
        group = [p for p in params if p.grad.dtype == dtype]
        flat = torch.cat([p.grad.detach().reshape(-1) for p in group])
        summed = torch.from_numpy(_allreduce_host(np.ascontiguousarray(flat.cpu().numpy()),
                                                  comm)).to(flat.device)
        start = 0
        for p in group:
            n = p.grad.numel()
            p.grad.copy_(summed[start:start + n].view_as(p.grad))
            start += n
