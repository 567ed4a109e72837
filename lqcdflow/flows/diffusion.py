"""Diffusion-model proposals with an exact log-density, model-parallel like the flows.

Forward process (variance preserving; Y. Song et al., arXiv:2011.13456):

    phi_t = alpha_t phi_0 + sigma_t eps,   eps ~ N(0, 1) per site,
    alpha_t = exp(-B(t) / 2),  sigma_t^2 = 1 - alpha_t^2,  B(t) = int_0^t beta = beta_min t
    + (beta_max - beta_min) t^2 / 2,

so phi_1 is close to N(0, 1). A score network s(phi, t) ~ grad log p_t(phi) is trained by
denoising score matching, and sampling integrates the probability-flow ODE from t = 1 to t_min,

    d phi / d tau = beta(t) [phi + s(phi, t)] / 2,   tau = 1 - t,

which maps N(0, 1) to (an approximation of) the data distribution. Its log-density follows
from the divergence of the drift. To make that divergence exact and cheap (no Hutchinson
estimate), the score is *hollow* per site: a cubic in the site's own value (the conditional
score of phi^4 at t = 0 is exactly of this form, -dS/dphi_x = 2 n1_x - 2(2D + m^2) phi_x -
4 lambda phi_x^3) whose coefficients depend on other sites only,

    s_x(phi, t) = B_x - (1 + A_x + C_x phi_x^2) phi_x,   (A_x, B_x, C_x) = net(c_x, t),
    C_x >= 0,

where c_x = (n1_x, n3_x) are sums of phi over the sites of the opposite checkerboard parity
nearest to x: the 2D nearest neighbours (n1) and the 4D(D - 1) sites at displacement
+-2 e_mu +- e_nu (n3). A = B = C = 0 is the score of N(0, 1), the distribution at t = 1; the
network's last layer starts at zero (C at 4.5e-5, see _CUBIC_OFFSET), so an untrained model
proposes nearly z itself. With A, C even and B odd in c (the network symmetrised over c ->
-c), the score commutes with phi -> -phi; sums
over the lattice directions make it equivariant under the lattice's translations and
reflections; the sampler's even/odd splitting below keeps the translations that map the
checkerboard onto itself (an even sum of the shift's components), as coupling flows do.

The ODE is integrated in K steps of length h on a uniform grid, each split into a half step of
the even sites (odd sites frozen) and one of the odd sites. With the coefficients frozen at the
step's midpoint time t, a site's equation is d phi_x / d tau = (beta / 2)(B_x - A_x phi_x -
C_x phi_x^3); its cubic part and then its linear part (k_x = -beta A_x / 2, c_x = beta B_x / 2)
are each solved exactly:

    phi_x <- phi_x / sqrt(1 + beta C_x h phi_x^2),              log-derivative -3/2 log(...),
    phi_x <- phi_x exp(k_x h) + c_x h phi1(k_x h),   phi1(z) = (exp(z) - 1) / z,   k_x h.

The half step changes each active site by a monotone map of its own value whose coefficients
depend on frozen sites only, so its Jacobian is triangular, and

    log q(phi) = log r(z) - sum_{steps, active x} log-derivatives      (r: the N(0, 1) prior)

is the exact log-density of the proposals the sampler makes (not of the ODE's exact flow):
independence Metropolis with it (:class:`lqcdflow.flows.sampler.IndependenceMetropolis`) is
exact whatever the network's error, the time discretisation and the prior's mismatch.

Denoising score matching (P. Vincent, Neural Comput. 23 (2011) 1661; the eps form of J. Ho et
al., arXiv:2006.11239): for data phi_0, t uniform in [t_min, 1] and eps ~ N(0, 1),

    L = E [ (1/V) sum_x (eps_hat_x(alpha_t phi_0 + sigma_t eps, t) - eps_x)^2 ],
    eps_hat = -sigma_t s,

minimised by s = grad log p_t. The noise and times of training step n are
counter-based (sample b of draw n, as the flow prior), so training is the same on any process
grid.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lqcdflow.flows.layers import SiLU, SiteLinear, checkerboard, softplus
from lqcdflow.flows.model import PriorPushForward
from lqcdflow.flows.prior import GaussianPrior
from lqcdflow.flows.state import spec_attrs, standard_phi4
from lqcdflow.flows.torch_lattice import TorchLattice, pad, sample_sum, window
from lqcdflow.flows.train import descend, set_learning_rate
from lqcdflow.rng import CounterRNG

# The cubic coefficient C = softplus(raw) starts at softplus(-10) = 4.5e-5: the untrained
# model is nearly the identity, and C still learns (softplus has no flat zero).
_CUBIC_OFFSET = -10.0

# Philox streams of the denoising noise and times; rng uses 1-3, the flow prior 16, nmcmc 17.
STREAM_DSM_NOISE = 18
STREAM_DSM_TIME = 19


class VPSchedule:
    """The variance-preserving noise schedule beta(t) = beta_min + (beta_max - beta_min) t.

    Methods take t as a float or a tensor and return the same kind.
    """

    def __init__(self, beta_min=0.1, beta_max=20.0):
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def beta(self, t):
        return self.beta_min + (self.beta_max - self.beta_min) * t

    def _integral(self, t):
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t

    def alpha(self, t):
        """alpha_t = exp(-B(t) / 2)."""
        return _exp(-0.5 * self._integral(t))

    def sigma(self, t):
        """sigma_t = sqrt(1 - exp(-B(t))), without cancellation at small t."""
        b = self._integral(t)
        if isinstance(b, torch.Tensor):
            return torch.sqrt(-torch.expm1(-b))
        return math.sqrt(-math.expm1(-b))


def _exp(x):
    return torch.exp(x) if isinstance(x, torch.Tensor) else math.exp(x)


def neighbour_sums(phi, lattice):
    """(n1, n3) of the module docstring for fields (batch, *local_shape): the sums of phi over
    the 2D nearest neighbours and over the 4D(D - 1) sites at +-2 e_mu +- e_nu (all of the
    opposite parity), each of shape (batch, *local_shape). Needs halos of width 2."""
    ndim, shape = lattice.ndim, lattice.local_shape
    padded = pad(phi, lattice, 2)
    n1 = torch.zeros_like(phi)
    n3 = torch.zeros_like(phi)
    for mu in range(ndim):
        for sign in (1, -1):
            d = [0] * ndim
            d[mu] = sign
            n1 = n1 + window(padded, shape, 2, d)
            for nu in range(ndim):
                if nu == mu:
                    continue
                for sign_nu in (1, -1):
                    d = [0] * ndim
                    d[mu], d[nu] = 2 * sign, sign_nu
                    n3 = n3 + window(padded, shape, 2, d)
    return n1, n3


class HollowScore(nn.Module):
    """The score network of the module docstring: s_x = B_x - (1 + A_x + C_x phi_x^2) phi_x
    with (A_x, B_x, log(exp(C_x) - 1)) a per-site multilayer perceptron (SiLU) of (n1_x, n3_x,
    t, alpha_t, sigma_t), symmetrised so that A, C are even and B odd under phi -> -phi, its
    last layer zero at start. The last layer's biases are those of A and C only (a bias of B
    would cancel in the odd part); C's starts at an offset that makes C ~ 0.

    Parameters
    ----------
    lattice : lqcdflow.parallel.Lattice
    schedule : VPSchedule
    hidden : sequence of int
        Widths of the hidden layers.
    """

    def __init__(self, lattice, schedule, hidden=(32, 32)):
        super().__init__()
        if any(n % 2 for n in lattice.shape):
            raise ValueError(f"the diffusion model needs even extents (a checkerboard), got "
                             f"{list(lattice.shape)}")
        self.lattice, self.schedule = lattice, schedule
        sizes = [5, *hidden, 3]
        modules = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == len(sizes) - 2
            modules.append(SiteLinear(a, b, bias=not last, dtype=torch.float64))
            if not last:
                modules.append(SiLU())
        nn.init.zeros_(modules[-1].weight)
        self.net = nn.Sequential(*modules)
        self.even_bias = nn.Parameter(torch.tensor([0.0, _CUBIC_OFFSET], dtype=torch.float64))

    def coefficients(self, phi, t):
        """(A, B, C), each of shape (batch, *local_shape), at times ``t`` (tensor (batch,))."""
        n1, n3 = neighbour_sums(phi, self.lattice)
        features = torch.stack([n1, n3], dim=-1).to(torch.float64)
        times = torch.stack([t, self.schedule.alpha(t), self.schedule.sigma(t)], dim=-1)
        times = times.reshape((t.shape[0],) + (1,) * self.lattice.ndim + (3,))
        times = times.expand(features.shape[:-1] + (3,))
        both = self.net(torch.cat([torch.cat([features, times], -1),
                                   torch.cat([-features, times], -1)]))
        plus, minus = both.chunk(2)
        a = 0.5 * (plus[..., 0] + minus[..., 0]) + self.even_bias[0]
        b = 0.5 * (plus[..., 1] - minus[..., 1])
        c = softplus(0.5 * (plus[..., 2] + minus[..., 2]) + self.even_bias[1])
        return a.to(phi.dtype), b.to(phi.dtype), c.to(phi.dtype)

    def forward(self, phi, t):
        """s(phi, t), shape (batch, *local_shape)."""
        a, b, c = self.coefficients(phi, t)
        return b - (1.0 + a + c * phi * phi) * phi


def denoising_loss(score, phi0, t, eps):
    """The denoising score-matching loss L of the module docstring for a batch: data
    ``phi0`` (batch, *local_shape), times ``t`` (batch,), noise ``eps`` like phi0; the mean
    over the batch of the per-sample global mean (summed reproducibly over the lattice)."""
    lattice = score.lattice
    shape = (-1,) + (1,) * lattice.ndim
    sigma = score.schedule.sigma(t).reshape(shape)
    noisy = score.schedule.alpha(t).reshape(shape) * phi0 + sigma * eps
    residual = -sigma * score(noisy, t) - eps
    return (sample_sum(residual * residual, lattice) / lattice.volume).mean()


class DenoisingBatches:
    """The training batches of denoising score matching, the same on every process grid.

    Step n uses configurations (n batch + b) mod N of a fixed permutation of the data (the
    permutation from ``seed``), times t_b = t_min + (1 - t_min) u_b with u_b the uniform of
    sample b, draw n, stream STREAM_DSM_TIME, and the noise of sample b of draw n of a
    GaussianPrior on stream STREAM_DSM_NOISE.

    Parameters
    ----------
    data : torch.Tensor
        (N, *local_shape): this rank's block of N configurations; the batches are on its
        device.
    lattice : lqcdflow.parallel.Lattice
    batch : int
    seed : int
    t_min : float
    """

    def __init__(self, data, lattice, batch, seed, t_min):
        self.data, self.batch, self.t_min = data, batch, t_min
        self.order = np.random.default_rng(seed).permutation(data.shape[0])
        self.rng = CounterRNG(seed)
        self.noise = GaussianPrior(lattice, seed, dtype=data.dtype, device=data.device,
                                   stream=STREAM_DSM_NOISE)

    def __call__(self, step):
        """(phi0, t, eps) of training step ``step``."""
        n = self.data.shape[0]
        picked = self.order[(step * self.batch + np.arange(self.batch)) % n]
        u = self.rng.uniform(np.arange(self.batch, dtype=np.uint64), step, STREAM_DSM_TIME)
        t = torch.from_numpy(self.t_min + (1.0 - self.t_min) * u).to(self.data.device)
        return (self.data[torch.from_numpy(picked).to(self.data.device)], t,
                self.noise.sample(self.batch, step))


@dataclass(frozen=True)
class DenoisingMetrics:
    """One denoising score-matching step: its number, the loss, the learning rate."""

    step: int
    loss: float
    lr: float

    def summary(self):
        """The progress line's figures."""
        return f"loss {self.loss:.6e}"


def denoising_step(score, optimizer, batches, step, lr_schedule, max_grad_norm=0.0):
    """One optimiser step of denoising score matching on the batch ``batches(step)``, with
    the learning rate ``lr_schedule(step)``; the gradients are summed over the lattice's
    ranks (and clipped to ``max_grad_norm`` if > 0), so every rank takes the same step
    (:func:`~lqcdflow.flows.train.descend`). Returns its DenoisingMetrics (the loss before
    the update); DivergenceError, without updating, if the loss or a gradient is not finite."""
    lr = set_learning_rate(optimizer, lr_schedule(step))
    optimizer.zero_grad()
    loss = denoising_loss(score, *batches(step))
    descend(score, optimizer, loss, step, score.lattice.comm, max_grad_norm)
    return DenoisingMetrics(step, loss.item(), lr)


class ProbabilityFlow(PriorPushForward):
    """Proposals phi = (K checkerboard-split exact steps of the probability-flow ODE)(z),
    z ~ N(0, 1), with their exact log q (module docstring).

    Parameters
    ----------
    prior : GaussianPrior
    score : HollowScore
    n_steps : int
        K, steps from t = 1 to t_min.
    t_min : float
        Where the integration stops (the data are at t = 0; sigma_{t_min} is the noise left).
    """

    def __init__(self, prior, score, n_steps=40, t_min=1e-3):
        super().__init__()
        self.prior, self.score, self.n_steps, self.t_min = prior, score, n_steps, t_min
        lattice = score.lattice
        for parity in (0, 1):
            self.register_buffer(f"active_{parity}", checkerboard(lattice, parity),
                                 persistent=False)

    def forward(self, z, logq):
        """(z, log r(z)) -> (phi, log q(phi))."""
        grid = np.linspace(1.0, self.t_min, self.n_steps + 1)
        for start, end in zip(grid[:-1], grid[1:]):
            for parity in (0, 1):
                z, logq = self._half_step(z, logq, 0.5 * (start + end), start - end,
                                          getattr(self, f"active_{parity}"))
        return z, logq

    def _half_step(self, start, logq, t, h, active):
        """The exact steps (cubic, then linear) of length h of the sites where ``active`` is
        1, at frozen time t."""
        schedule = self.score.schedule
        times = torch.full((start.shape[0],), t, dtype=torch.float64, device=start.device)
        a, b, c = self.score.coefficients(start, times)
        half_beta_h = 0.5 * schedule.beta(t) * h
        stretch = 1.0 + 2.0 * half_beta_h * c * start * start
        phi = start / torch.sqrt(stretch)
        kh = -half_beta_h * a
        small = kh.abs() < 1e-8
        phi1 = torch.where(small, 1.0 + 0.5 * kh, torch.expm1(kh) / torch.where(small, 1.0, kh))
        moved = phi * torch.exp(kh) + half_beta_h * b * phi1
        active = active.to(dtype=torch.bool, device=phi.device)
        log_derivative = torch.where(active, kh - 1.5 * torch.log(stretch), 0.0)
        log_det = sample_sum(log_derivative, self.score.lattice)
        # where, not a masked sum: an overflow at a frozen site must not turn it into NaN
        return torch.where(active, moved, start), logq - log_det


@dataclass(frozen=True)
class DiffusionSpec:
    """Architecture of a diffusion model (:class:`ProbabilityFlow` of a :class:`HollowScore`)
    and its target phi^4 couplings, as the state file records them.

    Attributes
    ----------
    shape : tuple of int
        Global lattice shape.
    hidden : tuple of int
        Widths of the score network's hidden layers.
    ode_steps : int
    t_min, beta_min, beta_max : float
        The sampler's end time and the noise schedule.
    m2, lam : float
        Standard-form couplings of the target action.
    seed : int
        Seed of the Gaussian prior.
    """

    shape: tuple
    hidden: tuple
    ode_steps: int
    t_min: float
    beta_min: float
    beta_max: float
    m2: float
    lam: float
    seed: int

    def memory_needed(self, local_volume, batch, itemsize, training):
        """Bytes per rank a batch needs at least: the network's float64 activations of both
        signs (training keeps all layers for the backward pass, sampling the widest two) and
        the batch's fields (``itemsize`` bytes each: phi, its features and the output)."""
        widths = sum(self.hidden) if training else 2 * max(self.hidden)
        return batch * local_volume * (2 * 8 * (widths + 7) + 4 * itemsize)

    def build(self, lattice, init_seed=0, dtype=torch.float64, device="cpu"):
        """The model on ``lattice``: torch's default initialisation after
        ``torch.manual_seed(init_seed)`` (the same on every rank; global RNG state restored),
        the last layer zero; the prior in ``dtype``, the network in float64."""
        if tuple(lattice.shape) != tuple(self.shape):
            raise ValueError(f"lattice shape {lattice.shape} differs from the spec's "
                             f"{tuple(self.shape)}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            score = HollowScore(lattice, VPSchedule(self.beta_min, self.beta_max),
                                tuple(self.hidden))
        prior = GaussianPrior(lattice, self.seed, dtype=dtype, device=device)
        return ProbabilityFlow(prior, score, self.ode_steps, self.t_min).to(device=device)

    def attrs(self):
        """The spec as HDF5 attribute values."""
        return spec_attrs(self)

    def theory(self, lattice):
        """The target theory on ``lattice`` (a Lattice or TorchLattice)."""
        return standard_phi4(lattice, self.m2, self.lam)

    def target(self, lattice):
        """The target theory on ``TorchLattice(lattice)``."""
        return self.theory(TorchLattice(lattice))
