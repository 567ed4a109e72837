"""The gradient all-reduce of model parallelism, and the convention it rests on.

Convention (no double counting)
-------------------------------
Every rank holds the same parameters theta and its block of every field. A global quantity,
e.g. the log-density of sample b,

    log q_b = sum_r a_{r,b}(theta),   a_{r,b} = rank r's local contribution,

is formed with :func:`lqcdflow.flows.torch_lattice.sample_sum`, so it is identical on all
ranks, and the loss L = f(log q, S) is then computed identically on every rank from such summed
values only.

Backward on rank r starts from dL/dL = 1 (the same on every rank). The backward of the sum
passes dL/d(log q_b) unchanged to rank r's a_{r,b}, because d(sum_r' a_r')/d a_r = 1; it does
*not* sum over ranks (that would count the loss once per rank). Rank r's backward then yields
only the part of dL/d theta that flows through its own local computations (the backward of a
halo exchange sends gradients of halo cells to the rank that owns them, so each site's field is
differentiated exactly once, on its owner):

    g_r = sum_b dL/d(log q_b) d a_{r,b}/d theta,   dL/d theta = sum_r g_r.

:func:`allreduce_gradients` forms that sum, after which every rank holds the single-process
gradient (to rounding: MPI_SUM of per-rank partial gradients) and an identical optimiser step
keeps the parameters identical.

Caveat: a parameter used *after* the sum (in the part of the loss computed redundantly on
every rank) would be counted once per rank by that sum; keep parameters out of it.
"""

import numpy as np
import torch
from mpi4py import MPI


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
        summed = np.ascontiguousarray(flat.cpu().numpy())
        comm.Allreduce(MPI.IN_PLACE, summed, op=MPI.SUM)
        summed = torch.from_numpy(summed).to(flat.device)
        start = 0
        for p in group:
            n = p.grad.numel()
            p.grad.copy_(summed[start:start + n].view_as(p.grad))
            start += n
