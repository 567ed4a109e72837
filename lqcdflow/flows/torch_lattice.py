"""The lattice seen from torch: the core's halo exchange and reproducible sums for batches of
fields, as differentiable operations.

A flow works on batches of fields, torch tensors of this rank's block of the lattice with a
batch axis first: (batch, l_0, ..., l_{D-1}, *site shape), or (batch, channels, l_0, ...) in
convolutions (``first`` names the first lattice axis). The operations here hand them to the
lattice's own code (:class:`lqcdflow.parallel.Lattice`), sharing memory through DLPack (NumPy
arrays for CPU tensors, CuPy arrays for CUDA tensors on a CuPy lattice), so the flows use the
decomposition, halo exchange and reproducible sums of the Markov chains, not copies of them:

    shift:       (T x)(y) = x(y + s e_mu),          backward: the opposite shift, T^T = T^{-1};
    sample_sum:  Sigma_b = sum_y x_b(y) per sample b, reproducibly (exact integer digits,
                 :mod:`lqcdflow.parallel.reduce`), in float64;
                 backward: dL/dx_b(y) = dL/dSigma_b on every site (no sum over ranks: see
                 :mod:`lqcdflow.flows.reduce` for why the gradient convention needs none);
    pad:         the block with ``width`` periodic neighbour planes on every lattice axis
                 (corners included), made of shifts, so its backward adds every halo cell's
                 gradient back onto the site that owns it.

Sample b's sum depends on sample b's terms only, with its own exponent: not on the batch, the
process grid or the summation order. :class:`TorchLattice` puts these behind the interface a
theory uses (``shift``, ``sum``, ``xp``), so the action density a theory defines once,
``theory.action(phi)`` of a theory built on a TorchLattice, is S per sample of a batch of
torch fields, differentiable, with the bits of the NumPy chain's sum of the same density.
"""

import math

import torch

from lqcdflow.parallel.reduce import reproducible_sum


def _array(x, lattice):
    """A lattice backend array sharing memory with tensor ``x`` (no autograd); a copy on the
    lattice's device if ``x`` lives elsewhere (a CUDA tensor on a NumPy lattice)."""
    x = x.detach()
    if x.is_cuda != lattice.backend.on_gpu:
        x = x.to("cuda" if lattice.backend.on_gpu else "cpu")
    return lattice.xp.from_dlpack(x.contiguous())


def _shift(x, lattice, mu, sign, first):
    xp, axes = lattice.xp, tuple(range(first, first + lattice.ndim))
    block = xp.moveaxis(_array(x, lattice), axes, tuple(range(lattice.ndim)))
    out = lattice.shift(block, mu, sign)
    return torch.from_dlpack(xp.moveaxis(out, tuple(range(lattice.ndim)), axes)).to(x.device)


class Shift(torch.autograd.Function):
    """y(x) = x(x + sign e_mu) across ranks (Lattice.shift); backward: the shift by -sign."""

    @staticmethod
    def forward(ctx, x, lattice, mu, sign, first):
        ctx.args = (lattice, mu, sign, first)
        return _shift(x, lattice, mu, sign, first)

    @staticmethod
    def backward(ctx, grad):
        lattice, mu, sign, first = ctx.args
        return Shift.apply(grad, lattice, mu, -sign, first), None, None, None, None


def shift(x, lattice, mu, sign=+1, first=1):
    """The batch of fields at the neighbour: out(y) = x(y + sign e_mu), periodic, on every
    sample (differentiable; collective over ``lattice.comm``).

    Parameters
    ----------
    x : torch.Tensor
        Axes ``first`` .. ``first + D - 1`` are this rank's block of the lattice; along the
        other lattice axes the tensor may be wider (a padded block), but of the same extent
        on every rank.
    lattice : lqcdflow.parallel.Lattice
    mu : int
    sign : +1 or -1
    first : int
        Position of the first lattice axis.
    """
    return Shift.apply(x, lattice, mu, sign, first)


class SampleSum(torch.autograd.Function):
    """Sigma_b = sum over every axis but the first, over all ranks, reproducibly (float64);
    backward: the incoming gradient on every term."""

    @staticmethod
    def forward(ctx, x, lattice):
        ctx.shape, ctx.dtype = x.shape, x.dtype
        terms = math.prod(x.shape[1:]) * lattice.size
        total = reproducible_sum(_array(x, lattice), lattice.comm, terms,
                                 axes=tuple(range(1, x.dim())), xp=lattice.xp)
        return torch.from_numpy(total).to(x.device)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.to(ctx.dtype).reshape((-1,) + (1,) * (len(ctx.shape) - 1))
        return grad.expand(ctx.shape), None


def sample_sum(x, lattice):
    """sum_y x_b(y) over the global lattice (and the site axes) for every sample b: a float64
    tensor of shape (batch,), the same bits on every rank, process grid and batch size
    (differentiable; collective over ``lattice.comm``)."""
    return SampleSum.apply(x, lattice)


def pad(x, lattice, width, first=1):
    """The block with ``width`` periodic neighbour planes on both sides of every lattice axis:

        (P x)(y) = x((o + y - w) mod L),   y_mu in [0, l_mu + 2 w),

    the global tensor circularly padded and cut to this rank's block plus its halo (what
    ``torch.nn.functional.pad(..., mode="circular")`` gives on one rank). Axis by axis, lower
    halo plane k (k = 1 .. w) is the first plane of x shifted k times by -e_mu, upper plane k
    the last plane of x shifted k times by +e_mu (so w may exceed the block), the later axes
    padding the already padded tensor (corners included).
    Differentiable: the backward adds each halo cell's gradient onto its owner.
    """
    if width < 0:
        raise ValueError(f"halo width must be >= 0, got {width}")
    for mu in range(lattice.ndim):
        dim, n = first + mu, x.shape[first + mu]
        lower, upper, below, above = x, x, [], []
        for _ in range(width):  # plane k of each side: x shifted k times (k may exceed n)
            lower = shift(lower, lattice, mu, -1, first)
            upper = shift(upper, lattice, mu, +1, first)
            below.insert(0, lower.narrow(dim, 0, 1))
            above.append(upper.narrow(dim, n - 1, 1))
        x = torch.cat([*below, x, *above], dim=dim)
    return x


def window(padded, shape, width, displacement, first=1):
    """x(y + d) on the block of ``shape``, read from ``padded`` = pad(x, ..., ``width``), for
    the displacement d = ``displacement`` (|d_mu| <= width)."""
    index = tuple(slice(width + d, width + d + n) for d, n in zip(displacement, shape))
    return padded[(slice(None),) * first + index]


class _TorchArrays:
    """torch as the array module of a theory (``lattice.xp``): torch's functions, and the
    NumPy names theories use that torch spells differently."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def ascontiguousarray(x):
        return x.contiguous()


class TorchLattice:
    """A :class:`~lqcdflow.parallel.Lattice` as a theory sees it, for batches of torch fields
    (batch, *local_shape, *site shape): ``shift`` and ``xp`` work sample by sample, ``sum``
    gives one reproducible sum per sample (see the module docstring).

    Build a theory on it to evaluate its action on such batches: ``theory.action(phi)``.

    Parameters
    ----------
    lattice : lqcdflow.parallel.Lattice
    """

    xp = _TorchArrays()

    def __init__(self, lattice):
        self.lattice = lattice
        self.shape, self.ndim, self.comm = lattice.shape, lattice.ndim, lattice.comm
        self.local_shape, self.offset = lattice.local_shape, lattice.offset
        self.volume = lattice.volume

    def __repr__(self):
        return f"TorchLattice({self.lattice!r})"

    def shift(self, x, mu, sign=+1):
        """x(y + sign e_mu) on every sample (:func:`shift`)."""
        return shift(x, self.lattice, mu, sign)

    def sum(self, x):
        """Per-sample reproducible sum (:func:`sample_sum`), shape (batch,)."""
        return sample_sum(x, self.lattice)
