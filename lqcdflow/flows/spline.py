"""Rational-quadratic spline coupling (neural spline flows, C. Durkan et al., arXiv:1906.04032).

On [-B, B] the element-wise map g is a monotone rational-quadratic spline with K bins, knots
(x_k, y_k), k = 0 .. K, x_0 = y_0 = -B, x_K = y_K = B, and derivatives d_k at the knots; outside
[-B, B] it is the identity (d_0 = d_K = 1 make g continuously differentiable there). In bin k,
with w_k = x_{k+1} - x_k, h_k = y_{k+1} - y_k, s_k = h_k / w_k and xi = (x - x_k) / w_k,

    g(x)  = y_k + h_k [s_k xi^2 + d_k xi (1 - xi)] / [s_k + delta_k xi (1 - xi)],
    g'(x) = s_k^2 [d_{k+1} xi^2 + 2 s_k xi (1 - xi) + d_k (1 - xi)^2]
            / [s_k + delta_k xi (1 - xi)]^2,       delta_k = d_{k+1} + d_k - 2 s_k,

and the inverse solves a xi^2 + b xi + c = 0 for xi in [0, 1] with u = y - y_k,

    a = h_k (s_k - d_k) + u delta_k,  b = h_k d_k - u delta_k,  c = -s_k u,
    xi = 2 c / (-b - sqrt(b^2 - 4 a c)).

The conditioner gives 3K - 1 channels per site, theta = (W_1..W_K, H_1..H_K, D_1..D_{K-1}):

    w_k = 2B [eps + (1 - K eps) softmax(W)_k],   h_k likewise from H,
    d_k = eps + (1 - eps) softplus(D_k) / log 2,

so theta = 0 is the identity map (equal bins, unit slopes). Mirroring, -g(-x; R theta) =
g(x; theta), reverses the order of the bins: R reverses W, H and D.

Circular splines (D. J. Rezende et al., arXiv:2002.02428) map the circle [-pi, pi) to itself:
B = pi, no identity outside, and the end derivatives are one free parameter, d_K = d_0, so that
g is continuously differentiable across -pi = pi. Their conditioner gives 3K channels,
theta = (W_1..W_K, H_1..H_K, D_0..D_{K-1}).
"""

import math

import torch
import torch.nn.functional as F

from lqcdflow.flows.layers import Coupling, conditioner, softplus

# Smallest bin width / height (fraction of 2B) and knot derivative: keeps the map and its
# inverse well conditioned.
_EPS = 1e-3


def _softmax(raw):
    """softmax over the last axis, its sum taken term by term (torch.softmax's sum rounds
    differently with a site's position in memory, see lqcdflow.flows.layers)."""
    e = torch.exp(raw - raw.max(dim=-1, keepdim=True).values)
    total = e[..., :1]
    for k in range(1, raw.shape[-1]):
        total = total + e[..., k:k + 1]
    return e / total


def _knots(raw, bound):
    """Knot positions (..., K + 1) from unnormalised bin sizes (..., K), from -B to B."""
    k = raw.shape[-1]
    sizes = _EPS + (1 - k * _EPS) * _softmax(raw)
    knots = torch.cumsum(sizes, dim=-1)
    knots = F.pad(knots, (1, 0))
    # the last knot is exactly B, whatever the rounding of the cumulative sum
    knots = torch.cat([knots[..., :-1], torch.ones_like(knots[..., -1:])], dim=-1)
    return bound * (2 * knots - 1)


def _derivatives(raw, circular):
    """Knot derivatives (..., K + 1), positive: from raw (..., K - 1) with 1 at both ends, or
    (circular) from raw (..., K) with d_K = d_0."""
    free = _EPS + (1 - _EPS) * softplus(raw) / math.log(2)
    if circular:
        return torch.cat([free, free[..., :1]], dim=-1)
    return F.pad(free, (1, 1), value=1.0)


def _gather(values, index):
    return torch.gather(values, -1, index).squeeze(-1)


class RationalQuadraticSpline:
    """The spline of a site: knots and derivatives from theta (channels last), see module doc.

    Parameters
    ----------
    theta : Tensor
        Shape (..., 3K - 1), or (..., 3K) if circular.
    bins : int
        K.
    bound : float
        B (pi if circular).
    circular : bool
        A map of the circle [-B, B) (every x inside, d_K = d_0).
    """

    def __init__(self, theta, bins, bound, circular=False):
        self.bound, self.circular = bound, circular
        self.xs = _knots(theta[..., :bins], bound)
        self.ys = _knots(theta[..., bins:2 * bins], bound)
        self.ds = _derivatives(theta[..., 2 * bins:], circular)

    def _inside(self, value):
        """Where the spline applies: everywhere on the circle, else in (-B, B)."""
        if self.circular:
            return torch.ones_like(value, dtype=torch.bool)
        return (value > -self.bound) & (value < self.bound)

    def _bin(self, knots, value):
        """Bin parameters (x_k, w_k, y_k, h_k, d_k, d_{k+1}) of the bin holding ``value``."""
        index = (value.unsqueeze(-1) >= knots[..., 1:-1]).sum(dim=-1, keepdim=True)
        x0, x1 = _gather(self.xs, index), _gather(self.xs, index + 1)
        y0, y1 = _gather(self.ys, index), _gather(self.ys, index + 1)
        return x0, x1 - x0, y0, y1 - y0, _gather(self.ds, index), _gather(self.ds, index + 1)

    @staticmethod
    def _log_slope(xi, s, d0, d1):
        """log g' at xi in a bin of slope s and end derivatives d0, d1."""
        one_minus = 1 - xi
        delta = d1 + d0 - 2 * s
        numerator = s * s * (d1 * xi * xi + 2 * s * xi * one_minus + d0 * one_minus * one_minus)
        denominator = s + delta * xi * one_minus
        return torch.log(numerator) - 2 * torch.log(denominator)

    def forward(self, x):
        """(g(x), log g'(x))."""
        inside = self._inside(x)
        xc = x.clamp(-self.bound, self.bound)
        x0, w, y0, h, d0, d1 = self._bin(self.xs, xc)
        s = h / w
        xi = ((xc - x0) / w).clamp(0, 1)
        term = xi * (1 - xi)
        y = y0 + h * (s * xi * xi + d0 * term) / (s + (d1 + d0 - 2 * s) * term)
        log_slope = self._log_slope(xi, s, d0, d1)
        return torch.where(inside, y, x), torch.where(inside, log_slope, 0.0)

    def inverse(self, y):
        """(g^{-1}(y), log g'(g^{-1}(y)))."""
        inside = self._inside(y)
        yc = y.clamp(-self.bound, self.bound)
        x0, w, y0, h, d0, d1 = self._bin(self.ys, yc)
        s = h / w
        u = yc - y0
        delta = d1 + d0 - 2 * s
        a = h * (s - d0) + u * delta
        b = h * d0 - u * delta
        c = -s * u
        root = torch.sqrt((b * b - 4 * a * c).clamp_min(0))
        xi = (2 * c / (-b - root)).clamp(0, 1)
        x = x0 + xi * w
        log_slope = self._log_slope(xi, s, d0, d1)
        return torch.where(inside, x, y), torch.where(inside, log_slope, 0.0)


class SplineCoupling(Coupling):
    """Coupling layer (:class:`lqcdflow.flows.layers.Coupling`) whose element-wise map is a
    :class:`RationalQuadraticSpline` with ``bins`` bins on [-bound, bound]."""

    def __init__(self, net, lattice, parity, bins, bound, z2=False):
        super().__init__(net, lattice, parity, z2)
        self.bins, self.bound = int(bins), float(bound)

    def _spline(self, theta):
        return RationalQuadraticSpline(torch.movedim(theta, 1, -1), self.bins, self.bound)

    def transform(self, x, theta):
        """(g(x), log g'(x)) for x of shape (batch, *local), theta (batch, 3K - 1, *local)."""
        return self._spline(theta).forward(x)

    def inverse(self, y, theta):
        """(g^{-1}(y), log g'(g^{-1}(y)))."""
        return self._spline(theta).inverse(y)

    def mirror(self, theta):
        """R theta: the order of the bins reversed in W, H and D."""
        k = self.bins
        return torch.cat([theta[:, :k].flip(1), theta[:, k:2 * k].flip(1),
                          theta[:, 2 * k:].flip(1)], dim=1)


def spline_couplings(lattice, n_layers, bins=8, bound=5.0, hidden=(8, 8), kernel_size=3,
                     z2=False):
    """``n_layers`` SplineCoupling layers with alternating mask parity 0, 1, 0, ...

    Each conditioner ends without tanh (the softmax and softplus bound the spline instead).
    """
    return [SplineCoupling(conditioner(lattice, hidden, kernel_size, out_channels=3 * bins - 1,
                                       final_tanh=False), lattice, i % 2, bins, bound, z2)
            for i in range(n_layers)]
