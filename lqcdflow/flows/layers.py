"""Flow layers on a rank's sub-lattice: periodic convolutions and affine coupling layers.

The layers follow the flow tutorial of M. S. Albergo, G. Kanwar and P. E. Shanahan,
Phys. Rev. D 100 (2019) 034515 (RealNVP couplings, L. Dinh et al., arXiv:1605.08803), with
every convolution getting its periodic halo from the neighbouring ranks (:func:`halo_pad`), so
that a layer on a decomposed lattice computes exactly the single-process layer.

Fields are tensors of shape (batch, l_0, ..., l_{D-1}), this rank's block of the lattice.
"""

import torch
from torch import nn

from lqcdflow.flows.halo import halo_pad
from lqcdflow.flows.reduce import allreduce_sum

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class PeriodicConv(nn.Module):
    """A convolution with periodic boundaries across ranks (D = 1, 2, 3).

    out_c(x) = b_c + sum_{c'} sum_{|d_mu| <= w} K_{c c'}(d) in_{c'}(x + d),   w = (k - 1) / 2,

    with x + d taken periodically on the global lattice: the input is padded by
    :func:`halo_pad` and convolved with ``padding=0``.

    Parameters
    ----------
    lattice : lqcdflow.parallel.Lattice
    in_channels, out_channels : int
    kernel_size : int
        Odd; (kernel_size - 1) / 2 must not exceed any local extent.
    bias : bool
    """

    def __init__(self, lattice, in_channels, out_channels, kernel_size=3, bias=True):
        super().__init__()
        ndim = lattice.ndim
        if ndim not in _CONV:
            raise ValueError(f"PeriodicConv supports lattices of D = 1, 2, 3 dimensions (torch "
                             f"has conv1d/2d/3d), got D = {ndim}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        self.lattice = lattice
        self.width = kernel_size // 2
        if any(self.width > l for l in lattice.local_shape):
            raise ValueError(f"kernel_size {kernel_size} needs halos of width {self.width}, wider "
                             f"than the local lattice {list(lattice.local_shape)}")
        self.conv = _CONV[ndim](in_channels, out_channels, kernel_size, padding=0, bias=bias)

    def forward(self, x):
        """(batch, in_channels, *local_shape) -> (batch, out_channels, *local_shape)."""
        return self.conv(halo_pad(x, self.lattice, self.width))


def conditioner(lattice, hidden=(8, 8), kernel_size=3, in_channels=1, out_channels=2,
                final_tanh=True):
    """The tutorial's convolutional network: PeriodicConv layers with LeakyReLU in between.

    Channels in_channels -> hidden[0] -> ... -> out_channels, a LeakyReLU after every layer but
    the last, and tanh after the last if ``final_tanh`` (bounding the scale s of a coupling).
    """
    sizes = [in_channels, *hidden, out_channels]
    modules = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        modules.append(PeriodicConv(lattice, a, b, kernel_size))
        if i < len(sizes) - 2:
            modules.append(nn.LeakyReLU())
        elif final_tanh:
            modules.append(nn.Tanh())
    return nn.Sequential(*modules)


def checkerboard(lattice, parity):
    """Local block of the mask m(x) = 1 if (sum_mu x_mu) mod 2 == parity else 0.

    x are GLOBAL coordinates (x_mu = o_mu + local index), so the mask is the same global
    checkerboard on every decomposition. Returns a float64 tensor of the local shape.
    """
    total = torch.zeros(lattice.local_shape, dtype=torch.int64)
    for mu, (o, l) in enumerate(zip(lattice.offset, lattice.local_shape)):
        coord = torch.arange(o, o + l, dtype=torch.int64)
        total = total + coord.reshape([-1 if nu == mu else 1 for nu in range(lattice.ndim)])
    return (total % 2 == parity).to(torch.float64)


class AffineCoupling(nn.Module):
    """RealNVP affine coupling with a checkerboard mask.

    With m the mask (frozen sites) and (s, t) = net(m x) (two output channels),

        y = m x + (1 - m) [x exp(s) + t],
        log |det dy/dx| = sum_x (1 - m(x)) s(x)    (summed over the GLOBAL lattice),

    and the inverse x = m y + (1 - m) (y - t) exp(-s), with the same (s, t) = net(m y) since
    m y = m x. The log-density is carried along: for x ~ q_X, log q_Y(y) = log q_X(x) - log|J|.

    Parameters
    ----------
    net : nn.Module
        (batch, 1, *local_shape) -> (batch, 2, *local_shape), e.g. :func:`conditioner`.
    lattice : lqcdflow.parallel.Lattice
    parity : int
        0 or 1: which sublattice is frozen (alternate it between layers).
    """

    def __init__(self, net, lattice, parity):
        super().__init__()
        self.net = net
        self.lattice = lattice
        self.parity = int(parity)
        # not in the state dict: it depends on the rank's block, the parameters do not
        self.register_buffer("mask", checkerboard(lattice, parity), persistent=False)

    def _scale_shift(self, frozen):
        out = self.net(frozen.unsqueeze(1))
        return out[:, 0], out[:, 1]

    def _log_jacobian(self, active, s):
        """sum over the global lattice of (1 - m) s, per sample (all-reduced)."""
        local = (active * s).flatten(1).sum(dim=1)
        return allreduce_sum(local, self.lattice.comm)

    def forward(self, x, logq):
        """(x, log q_X(x)) -> (y, log q_Y(y)) with log q_Y(y) = log q_X(x) - log|J(x)|."""
        m = self.mask.to(dtype=x.dtype, device=x.device)
        frozen, active = m * x, 1 - m
        s, t = self._scale_shift(frozen)
        y = frozen + active * (x * torch.exp(s) + t)
        return y, logq - self._log_jacobian(active, s)

    def reverse(self, y, logq):
        """(y, log q_Y(y)) -> (x, log q_X(x)) with log q_X(x) = log q_Y(y) + log|J(x)|."""
        m = self.mask.to(dtype=y.dtype, device=y.device)
        frozen, active = m * y, 1 - m
        s, t = self._scale_shift(frozen)
        x = frozen + active * (y - t) * torch.exp(-s)
        return x, logq + self._log_jacobian(active, s)


def affine_couplings(lattice, n_layers, hidden=(8, 8), kernel_size=3):
    """``n_layers`` AffineCoupling layers with alternating mask parity 0, 1, 0, ..."""
    return [AffineCoupling(conditioner(lattice, hidden, kernel_size), lattice, i % 2)
            for i in range(n_layers)]
