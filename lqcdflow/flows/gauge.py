"""Gauge-equivariant flows for 2D U(1) lattice gauge theory (G. Kanwar et al., Phys. Rev. Lett.
125 (2020) 121601, arXiv:2003.06413; the tutorial arXiv:2101.08176), model-parallel like the
phi^4 flows: every layer works on a rank's block of the links.

Links are angles theta_mu(x) in [-pi, pi), tensors (batch, L_0, L_1, 2) on a rank's block (the
layout of :mod:`lqcdflow.theories.u1`, batch first). The prior is the Haar measure: theta
uniform per link (:class:`HaarPrior`, counter-based like the Gaussian prior), log r = -2V
log(2 pi).

Coupling layer k moves the links theta_mu(x), mu = k mod 2, on every 4th line x_nu = o (mod 4)
(nu = 1 - mu, o = (k // 2) mod 4, global coordinates) through the plaquette they open,

    P(x) = theta_01(x) = theta_0(x) + theta_1(x + e_0) - theta_0(x + e_1) - theta_1(x),

which holds theta_mu(x) with the sign s_mu = +1 for mu = 0, -1 for mu = 1. The layer's
plaquettes are active (x_nu = o mod 4), frozen (x_nu = o + 1, o + 2) or passive (x_nu = o + 3).
An active plaquette is mapped by an invertible map of the circle whose parameters a
convolutional network computes from cos and sin of the frozen plaquettes,

    P'(x) = h(P(x); net(frozen)),   theta'_mu(x) = theta_mu(x) + s_mu (P'(x) - P(x))  (wrapped),

so that the new plaquette is P'(x); the other plaquette holding theta_mu(x), P(x - e_nu), is
passive, and no frozen plaquette holds a moved link. The map is triangular on the links (an
active link moves with its own plaquette only, the parameters depend on unmoved links), so

    log |det J| = sum over active x of log h'(P(x)).

Plaquettes are gauge invariant, so h and the shifts P' - P are, and the layer commutes with
gauge transformations theta_mu(x) -> theta_mu(x) + alpha(x) - alpha(x + e_mu); log q is gauge
invariant.

The circle map (:func:`ncp`) is the tutorial's mixture of non-compact projections: with
components s_1 .. s_n and a rotation t,

    g_s(x) = 2 atan(e^s tan(x / 2)),   x in [-pi, pi]   (increasing, g(+-pi) = +-pi),
    h(x) = wrap((1/n) sum_i g_{s_i}(x) + t),
    h'(x) = (1/n) sum_i e^{s_i} / (cos^2(x/2) + e^{2 s_i} sin^2(x/2)).

Its inverse (:func:`ncp_inverse`) bisects the increasing mixture to the last bit. The other
circle map (:class:`CircularSplineMap`) is a circular rational-quadratic spline of K bins
(:mod:`lqcdflow.flows.spline`; D. J. Rezende et al., arXiv:2002.02428) followed by a rotation,

    h(x) = wrap(g(x) + t),   h'(x) = g'(x),

inverted in closed form (Boyda et al., arXiv:2008.05456, use both maps). Every
operation is one whose bits do not depend on a value's position in memory (see
:mod:`lqcdflow.flows.layers`), so proposals are bitwise the same on any decomposition.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lqcdflow.flows.layers import conditioner
from lqcdflow.flows.spline import RationalQuadraticSpline
from lqcdflow.flows.prior import STREAM_FLOW_PRIOR
from lqcdflow.flows.state import build_flow, spec_attrs
from lqcdflow.flows.torch_lattice import TorchLattice, sample_sum
from lqcdflow.rng import CounterRNG
from lqcdflow.theories.u1 import FLOW_COUPLINGS, TWO_PI, U1, wrap

# Bisection steps of ncp_inverse: the interval [-pi, pi] halved 64 times is below one ulp.
_BISECTIONS = 64


class HaarPrior:
    """Haar-random U(1) links on the local block of ``lattice``: theta = pi (2u - 1), u uniform
    in (0, 1) from the counter-based generator at counter b V D + i(x) D + mu for link mu of
    site x in sample b (the same on any process grid and batch size).

    Parameters
    ----------
    lattice : lqcdflow.parallel.Lattice
    seed : int
    dtype : torch.dtype
    device : torch.device or str
    stream : int
    """

    def __init__(self, lattice, seed, dtype=torch.float64, device="cpu",
                 stream=STREAM_FLOW_PRIOR):
        self.lattice, self.rng = lattice, CounterRNG(seed)
        self.dtype, self.device, self.stream = dtype, torch.device(device), stream
        self._links = lattice.backend.asnumpy(lattice.dof_index((lattice.ndim,)))

    def sample(self, batch, draw, start=0):
        """Samples start .. start + batch - 1 of draw ``draw``: shape (batch, *local, D)."""
        per_sample = self.lattice.volume * self.lattice.ndim
        if (start + batch) * per_sample >= 2**64:
            raise ValueError("sample index times links exceeds the 64-bit counter")
        b = np.arange(start, start + batch, dtype=np.uint64) * np.uint64(per_sample)
        counters = b.reshape((-1,) + (1,) * self._links.ndim) + self._links
        u = self.rng.uniform(counters, draw, self.stream)
        return torch.from_numpy(math.pi * (2.0 * u - 1.0)).to(dtype=self.dtype,
                                                               device=self.device)

    def log_prob(self, theta):
        """log r = -V D log(2 pi) per sample (float64, shape (batch,))."""
        value = -self.lattice.volume * self.lattice.ndim * math.log(TWO_PI)
        return torch.full((theta.shape[0],), value, dtype=torch.float64, device=theta.device)


def ncp(x, s, t):
    """The circle map h of the module docstring and log h'(x).

    Parameters
    ----------
    x : Tensor
        Angles in [-pi, pi), shape (batch, *local).
    s : Tensor
        Components, shape (batch, n, *local).
    t : Tensor
        Rotation, shape (batch, *local).
    """
    half = x / 2
    tan_half, cos2, sin2 = torch.tan(half), torch.cos(half) ** 2, torch.sin(half) ** 2
    total, logs = torch.zeros_like(x), []
    for i in range(s.shape[1]):
        e = torch.exp(s[:, i])
        total = total + 2 * torch.atan(e * tan_half)
        logs.append(-torch.log(cos2 / e + e * sin2))
    return wrap(total / len(logs) + t, torch), _log_mean_exp(logs)


def _log_mean_exp(logs):
    """log((1/n) sum_i exp(l_i)), the terms added in order (see lqcdflow.flows.layers)."""
    top = logs[0]
    for value in logs[1:]:
        top = torch.maximum(top, value)
    acc = torch.zeros_like(top)
    for value in logs:
        acc = acc + torch.exp(value - top)
    return top + torch.log(acc / len(logs))


def _mixture(x, s):
    """(1/n) sum_i g_{s_i}(x), increasing on [-pi, pi]."""
    tan_half, total = torch.tan(x / 2), torch.zeros_like(x)
    for i in range(s.shape[1]):
        total = total + 2 * torch.atan(torch.exp(s[:, i]) * tan_half)
    return total / s.shape[1]


def ncp_inverse(y, s, t):
    """x in [-pi, pi) with ncp(x, s, t) = y: bisection of the mixture for wrap(y - t)."""
    target = wrap(y - t, torch)
    low, high = torch.full_like(y, -math.pi), torch.full_like(y, math.pi)
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2
        below = _mixture(middle, s) < target
        low, high = torch.where(below, middle, low), torch.where(below, high, middle)
    return wrap((low + high) / 2, torch)


class NCPMap:
    """The NCP mixture of ``components`` components (:func:`ncp`) as the circle map of a
    coupling: the conditioner's channels are (s_1 .. s_n, t)."""

    def __init__(self, components):
        self.channels = int(components) + 1

    def forward(self, x, out):
        """(h(x), log h'(x)) with the parameters ``out`` (batch, channels, *local)."""
        return ncp(x, out[:, :-1], out[:, -1])

    def inverse(self, y, out):
        """(x, log h'(x)) with h(x) = y."""
        x = ncp_inverse(y, out[:, :-1], out[:, -1])
        return x, ncp(x, out[:, :-1], out[:, -1])[1]


class CircularSplineMap:
    """A circular rational-quadratic spline of ``bins`` bins and a rotation t (module
    docstring) as the circle map of a coupling: the conditioner's channels are the spline's
    3K (:class:`~lqcdflow.flows.spline.RationalQuadraticSpline`) and t."""

    def __init__(self, bins):
        self.bins = int(bins)
        self.channels = 3 * self.bins + 1

    def _spline(self, out):
        return RationalQuadraticSpline(torch.movedim(out[:, :-1], 1, -1), self.bins, math.pi,
                                       circular=True)

    def forward(self, x, out):
        """(h(x), log h'(x)) with the parameters ``out`` (batch, channels, *local)."""
        y, log_derivative = self._spline(out).forward(x)
        return wrap(y + out[:, -1], torch), log_derivative

    def inverse(self, y, out):
        """(x, log h'(x)) with h(x) = y."""
        return self._spline(out).inverse(wrap(y - out[:, -1], torch))


def line_mask(lattice, nu, residues):
    """1 where the GLOBAL coordinate x_nu mod 4 is in ``residues``, else 0 (float64 tensor of
    the local shape): the same stripes on every decomposition."""
    coord = torch.arange(lattice.offset[nu], lattice.offset[nu] + lattice.local_shape[nu])
    hit = torch.isin(coord % 4, torch.tensor(sorted(r % 4 for r in residues)))
    shape = [-1 if axis == nu else 1 for axis in range(lattice.ndim)]
    return hit.reshape(shape).expand(lattice.local_shape).to(torch.float64)


class U1Coupling(nn.Module):
    """The gauge-equivariant coupling layer of the module docstring.

    Parameters
    ----------
    net : nn.Module
        (batch, 2, *local) -> (batch, circle_map.channels, *local): cos and sin of the frozen
        plaquettes (zero elsewhere) to the parameters of the circle map.
    theory : lqcdflow.theories.u1.U1
        On a TorchLattice: its plaquette angles.
    mu : int
        Direction of the links moved (0 or 1).
    offset : int
        o: the lines x_nu = o (mod 4) move.
    circle_map : NCPMap or CircularSplineMap
        h.
    """

    def __init__(self, net, theory, mu, offset, circle_map):
        super().__init__()
        self.net, self.theory, self.mu = net, theory, int(mu)
        self.circle_map = circle_map
        lattice, nu = theory.lattice.lattice, 1 - int(mu)
        self.sign = 1.0 if self.mu == 0 else -1.0
        # not in the state dict: they depend on the rank's block, the parameters do not
        self.register_buffer("active", line_mask(lattice, nu, {offset}), persistent=False)
        self.register_buffer("frozen", line_mask(lattice, nu, {offset + 1, offset + 2}),
                             persistent=False)

    def _plaquette_and_parameters(self, theta):
        plaquette = wrap(self.theory.plaquette_angles(theta)[(0, 1)], torch)
        frozen = self.frozen.to(theta.dtype) * plaquette
        return plaquette, self.net(torch.stack([torch.cos(frozen), torch.sin(frozen)], dim=1))

    def _move(self, theta, shift):
        """theta_mu(x) + s_mu shift(x), wrapped, on the active links; the others unchanged."""
        links = list(theta.unbind(-1))
        moved = wrap(links[self.mu] + self.sign * shift, torch)
        links[self.mu] = torch.where(self.active.bool(), moved, links[self.mu])
        return torch.stack(links, dim=-1)

    def _log_jacobian(self, log_derivative):
        return sample_sum(self.active.to(log_derivative.dtype) * log_derivative,
                          self.theory.lattice.lattice)

    def forward(self, theta, logq):
        """(theta, log q(theta)) -> (theta', log q(theta') = log q(theta) - log|J|)."""
        plaquette, out = self._plaquette_and_parameters(theta)
        new, log_derivative = self.circle_map.forward(plaquette, out)
        return (self._move(theta, new - plaquette),
                logq - self._log_jacobian(log_derivative))

    def reverse(self, theta, logq):
        """(theta', log q(theta')) -> (theta, log q(theta) = log q(theta') + log|J|)."""
        plaquette, out = self._plaquette_and_parameters(theta)
        old, log_derivative = self.circle_map.inverse(plaquette, out)
        return (self._move(theta, old - plaquette),
                logq + self._log_jacobian(log_derivative))


def u1_couplings(theory, n_layers, circle_map, hidden=(8, 8), kernel_size=3):
    """``n_layers`` U1Coupling layers with ``circle_map`` cycling through the 8 masks:
    mu = k mod 2, offset = (k // 2) mod 4 (the tutorial's arrangement)."""
    lattice = theory.lattice.lattice
    return [U1Coupling(conditioner(lattice, hidden, kernel_size, in_channels=2,
                                   out_channels=circle_map.channels, final_tanh=False),
                       theory, k % 2, (k // 2) % 4, circle_map)
            for k in range(n_layers)]


@dataclass(frozen=True)
class U1FlowSpec:
    """Architecture of a gauge-equivariant flow for 2D U(1) and its target coupling.

    Attributes
    ----------
    shape : tuple of int
        Global lattice shape (L_0, L_1), both multiples of 4.
    n_layers : int
    hidden : tuple of int
    kernel_size : int
    beta : float
        Target coupling of the Wilson action.
    seed : int
        Seed of the Haar prior.
    components : int
        n, the components of each NCP circle map.
    coupling : str
        The circle map: "ncp" (:class:`NCPMap`) or "spline" (:class:`CircularSplineMap`).
    bins : int
        K, the bins of each spline.
    """

    shape: tuple
    n_layers: int
    hidden: tuple
    kernel_size: int
    beta: float
    seed: int
    components: int = 2
    coupling: str = "ncp"
    bins: int = 8

    def __post_init__(self):
        if self.coupling not in FLOW_COUPLINGS:
            raise ValueError(f"coupling must be one of {', '.join(FLOW_COUPLINGS)}, "
                             f"got {self.coupling!r}")
        if len(self.shape) != 2 or any(n % 4 for n in self.shape):
            raise ValueError(f"gauge-equivariant U(1) flows need a 2D lattice with extents that "
                             f"are multiples of 4 (stripes of period 4), got {list(self.shape)}")

    def theory(self, lattice):
        """The target theory on ``lattice`` (a Lattice or TorchLattice)."""
        return U1(lattice, self.beta)

    def target(self, lattice):
        """The target theory on ``TorchLattice(lattice)``."""
        return self.theory(TorchLattice(lattice))

    def memory_needed(self, local_volume, batch, itemsize, training):
        """Bytes per rank a batch needs at least: the hidden channels of every layer (training,
        for the backward pass) or of the widest convolution (sampling), and the links."""
        channels = (self.n_layers * (sum(self.hidden) + 8) if training
                    else 2 * max(self.hidden)) + 4
        return batch * local_volume * itemsize * channels

    def layers(self, lattice):
        """The coupling layers on ``lattice`` (torch's default initialisation)."""
        circle_map = (NCPMap(self.components) if self.coupling == "ncp"
                      else CircularSplineMap(self.bins))
        return u1_couplings(self.target(lattice), self.n_layers, circle_map,
                            tuple(self.hidden), self.kernel_size)

    def build(self, lattice, init_seed=0, dtype=torch.float64, device="cpu"):
        """The flow on ``lattice`` (:func:`~lqcdflow.flows.state.build_flow`, Haar prior)."""
        return build_flow(self, lattice, HaarPrior, init_seed, dtype, device)

    def attrs(self):
        """The spec as HDF5 attribute values."""
        return spec_attrs(self)
