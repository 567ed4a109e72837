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


class Coupling(nn.Module):
    """A coupling layer with a checkerboard mask: base of the affine and spline couplings.

    With m the mask (frozen sites) and theta = net(m x) the conditioner's output channels,

        y = m x + (1 - m) g(x; theta),
        log |det dy/dx| = sum_x (1 - m(x)) log g'(x_x; theta_x)   (over the GLOBAL lattice),

    where g is an invertible element-wise map (``transform``, ``inverse``). m y = m x, so the
    inverse uses the same theta. The log-density is carried along: for x ~ q_X,
    log q_Y(y) = log q_X(x) - log|J|.

    Z2 equivariance (``z2=True``): with R the channel map of the mirrored transform,
    -g(-x; R theta) = g(x; theta), the conditioner is symmetrised,

        theta(m x) = [net(m x) + R net(-m x)] / 2,   so theta(-m x) = R theta(m x),

    and then y(-x) = -y(x): the layer commutes with phi -> -phi for any weights (the phi^4
    action has this symmetry, and a flow without it must learn it).

    Parameters
    ----------
    net : nn.Module
        (batch, 1, *local_shape) -> (batch, channels, *local_shape), e.g. :func:`conditioner`.
    lattice : lqcdflow.parallel.Lattice
    parity : int
        0 or 1: which sublattice is frozen (alternate it between layers).
    z2 : bool
        Symmetrise the conditioner as above.
    """

    def __init__(self, net, lattice, parity, z2=False):
        super().__init__()
        self.net = net
        self.lattice = lattice
        self.parity = int(parity)
        self.z2 = bool(z2)
        # not in the state dict: it depends on the rank's block, the parameters do not
        self.register_buffer("mask", checkerboard(lattice, parity), persistent=False)

    def _theta(self, frozen):
        if not self.z2:
            return self.net(frozen.unsqueeze(1))
        # one network call for both signs: twice the batch
        both = self.net(torch.cat([frozen, -frozen]).unsqueeze(1))
        plus, minus = both.chunk(2)
        return 0.5 * (plus + self.mirror(minus))

    def _log_jacobian(self, active, log_derivative):
        """sum over the global lattice of (1 - m) log g', per sample (all-reduced)."""
        local = (active * log_derivative).flatten(1).sum(dim=1)
        return allreduce_sum(local, self.lattice.comm)

    def forward(self, x, logq):
        """(x, log q_X(x)) -> (y, log q_Y(y)) with log q_Y(y) = log q_X(x) - log|J(x)|."""
        m = self.mask.to(dtype=x.dtype, device=x.device)
        frozen, active = m * x, 1 - m
        g, log_derivative = self.transform(x, self._theta(frozen))
        return frozen + active * g, logq - self._log_jacobian(active, log_derivative)

    def reverse(self, y, logq):
        """(y, log q_Y(y)) -> (x, log q_X(x)) with log q_X(x) = log q_Y(y) + log|J(x)|."""
        m = self.mask.to(dtype=y.dtype, device=y.device)
        frozen, active = m * y, 1 - m
        g_inv, log_derivative = self.inverse(y, self._theta(frozen))
        return frozen + active * g_inv, logq + self._log_jacobian(active, log_derivative)


class AffineCoupling(Coupling):
    """RealNVP affine coupling (Dinh et al.): theta = (s, t) (two channels) and

        g(x) = x exp(s) + t,   log g'(x) = s,   g^{-1}(y) = (y - t) exp(-s).

    The mirror map is R(s, t) = (s, -t): with ``z2`` the scale is even and the shift odd in
    the frozen field.
    """

    def transform(self, x, theta):
        """(g(x), log g'(x)) for x of shape (batch, *local) and theta (batch, 2, *local)."""
        s, t = theta[:, 0], theta[:, 1]
        return x * torch.exp(s) + t, s

    def inverse(self, y, theta):
        """(g^{-1}(y), log g'(g^{-1}(y)))."""
        s, t = theta[:, 0], theta[:, 1]
        return (y - t) * torch.exp(-s), s

    @staticmethod
    def mirror(theta):
        """R(s, t) = (s, -t)."""
        return torch.stack([theta[:, 0], -theta[:, 1]], dim=1)


def affine_couplings(lattice, n_layers, hidden=(8, 8), kernel_size=3, z2=False):
    """``n_layers`` AffineCoupling layers with alternating mask parity 0, 1, 0, ..."""
    return [AffineCoupling(conditioner(lattice, hidden, kernel_size), lattice, i % 2, z2)
            for i in range(n_layers)]
