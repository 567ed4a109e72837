"""Flow layers on a rank's sub-lattice: periodic convolutions and affine coupling layers.

The layers follow the flow tutorial of M. S. Albergo, G. Kanwar and P. E. Shanahan,
Phys. Rev. D 100 (2019) 034515 (RealNVP couplings, L. Dinh et al., arXiv:1605.08803), with
every convolution getting its periodic halo from the neighbouring ranks
(:func:`lqcdflow.flows.torch_lattice.pad`), so that a layer on a decomposed lattice computes
the single-process layer.

Without autograd (proposals are made under ``torch.no_grad()``) every operation gives each site
the same bits on any process grid and batch size: convolutions add their terms in a fixed
order (torch's own convolution orders its sums by the tensor shapes), the element-wise maps use
only operations whose result does not depend on a value's position in memory (+, *, /, exp,
log, tanh, sqrt, comparisons; not torch's softplus, softmax or sums over channels, whose
vectorised and scalar paths round differently), and global sums are reproducible. So a flow
chain's proposals, log-densities and decisions are bitwise the same on any decomposition.

Fields are tensors of shape (batch, l_0, ..., l_{D-1}), this rank's block of the lattice.
"""

import itertools

import torch
from torch import nn

from lqcdflow.flows.torch_lattice import pad, sample_sum

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class PeriodicConv(nn.Module):
    """A convolution with periodic boundaries across ranks (D = 1, 2, 3).

    out_c(x) = b_c + sum_{|d_mu| <= w} sum_{c'} K_{c c'}(d) in_{c'}(x + d),   w = (k - 1) / 2,

    with x + d taken periodically on the global lattice: the input is padded by
    :func:`~lqcdflow.flows.torch_lattice.pad`. With autograd, torch's convolution (with
    ``padding=0``) evaluates it; without, the terms are added one at a time, d in C order and
    c' in order within each d, so that every site gets the same bits on any decomposition and
    batch (as fast as torch's float64 convolution; its backward would be 2.3x slower).

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
        self.conv = _CONV[ndim](in_channels, out_channels, kernel_size, padding=0, bias=bias)

    def forward(self, x):
        """(batch, in_channels, *local_shape) -> (batch, out_channels, *local_shape)."""
        padded = pad(x, self.lattice, self.width, first=2)
        if torch.is_grad_enabled():
            return self.conv(padded)
        return self._fixed_order(padded)

    def _fixed_order(self, padded):
        weight, bias = self.conv.weight, self.conv.bias
        shape = (padded.shape[0], weight.shape[0]) + self.lattice.local_shape
        column = (1, -1) + (1,) * self.lattice.ndim
        out = torch.zeros(shape, dtype=padded.dtype, device=padded.device)
        if bias is not None:
            out.add_(bias.reshape(column))
        # in place, into two buffers: a batch's output is megabytes, and a fresh one per term
        # made sampling 1.4x slower (the same operations, so the same bits)
        term = torch.empty_like(out)
        for d in itertools.product(range(2 * self.width + 1), repeat=self.lattice.ndim):
            window = padded[(slice(None), slice(None))
                            + tuple(slice(k, k + n) for k, n in zip(d, self.lattice.local_shape))]
            for c in range(weight.shape[1]):
                torch.mul(weight[(slice(None), c) + d].reshape(column), window[:, c:c + 1],
                          out=term)
                out.add_(term)
        return out


def softplus(x):
    """log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), from exp and log alone (whose bits do not
    depend on the position in memory, unlike torch's softplus and log1p)."""
    return torch.clamp(x, min=0) + torch.log(1 + torch.exp(-torch.abs(x)))


class SiLU(nn.Module):
    """x sigma(x) = x / (1 + e^-x), from exp alone (torch's sigmoid rounds by position)."""

    def forward(self, x):
        return x / (1 + torch.exp(-x))


class SiteLinear(nn.Linear):
    """nn.Linear on the last axis of every site, y_j = b_j + sum_k W_jk x_k: torch's matrix
    product with autograd; without, the terms added in order of k, so that every site gets
    the same bits on any decomposition and batch (the matrix product's summation order
    changes with the number of rows)."""

    def forward(self, x):
        if torch.is_grad_enabled():
            return super().forward(x)
        out = torch.zeros(x.shape[:-1] + (self.out_features,), dtype=x.dtype, device=x.device)
        if self.bias is not None:
            out.add_(self.bias)
        term = torch.empty_like(out)  # in place, as PeriodicConv._fixed_order
        for k in range(self.in_features):
            torch.mul(x[..., k:k + 1], self.weight[:, k], out=term)
            out.add_(term)
        return out


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
        """sum over the global lattice of (1 - m) log g', per sample (reproducible)."""
        return sample_sum(active * log_derivative, self.lattice)

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
