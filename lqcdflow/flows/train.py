"""Reverse-KL self-training of the decomposed flow (Albergo, Kanwar, Shanahan 2019).

With phi_b ~ q (b = 1 .. N, sample b of draw ``step`` of the prior, so a step is a pure
function of (seed, step) and the parameters: the same on any process grid) the loss is

    L = (1/N) sum_b [ log q(phi_b) + S(phi_b) ]  ( = KL(q || p) - log Z, stochastic estimate ),

and the batch's effective sample size per sample, from the weights w_b = p(phi_b) Z / q(phi_b),

    log w_b = -S(phi_b) - log q(phi_b),
    ESS / N = (sum_b w_b)^2 / (N sum_b w_b^2)
            = exp(2 logsumexp_b(log w_b) - logsumexp_b(2 log w_b)) / N,

in (0, 1], both computed identically on every rank from all-reduced log q and S. Gradients are
summed over ranks with :func:`allreduce_gradients` before the optimiser step, so every rank holds
the single-process parameters (see :mod:`lqcdflow.flows.reduce`).

The learning rate is a function of the step number (``lr_schedule(step)``), so a run restarted
at step n (:mod:`lqcdflow.flows.state`) continues exactly.
"""

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from lqcdflow.flows.reduce import allreduce_gradients
from lqcdflow.mc.driver import DivergenceError


@dataclass(frozen=True)
class TrainMetrics:
    """One training step: its number, the loss, ESS / N of its batch, the learning rate, and
    the batch's log weights log w_b = -S(phi_b) - log q(phi_b) (detached float64 CPU tensor of
    shape (N,), the same on every rank; left out of comparisons and the repr)."""

    step: int
    loss: float
    ess: float
    lr: float
    log_weights: torch.Tensor = field(compare=False, repr=False)

    def summary(self):
        """The progress line's figures: the loss, ESS / N and the acceptance estimate
        (:func:`acceptance_estimate`) of the batch."""
        acceptance = acceptance_estimate(self.log_weights.numpy())
        return f"loss {self.loss:+.6e}  ess {self.ess:6.3f}  acc {acceptance:6.3f}"


def acceptance_estimate(log_weights):
    """Estimated acceptance rate of independence Metropolis with proposals from q.

    At equilibrium the rate is A = E_{x ~ p, x' ~ q} min(1, w(x') / w(x)). With one batch
    x_1 .. x_N ~ q, reweighting x to p (E_p[f] = E_q[w f] / E_q[w]) and taking every other
    sample as x' gives the ratio estimator (consistent, bias O(1/N))

        A ~ sum_{a != b} w_a min(1, w_b / w_a) / ((N - 1) sum_a w_a)
          = 2 sum_k (N - k) w_(k) / ((N - 1) sum_a w_a),

    w_(1) <= ... <= w_(N) the sorted weights (w_(k) is the smaller of a pair with the N - k
    larger ones). It is 1 when all weights are equal.

    Parameters
    ----------
    log_weights : array of shape (N,), N >= 2
        log w = -S - log q (any common constant cancels).

    Examples
    --------
    >>> acceptance_estimate([0.0, 0.0, 0.0])
    1.0
    >>> round(acceptance_estimate([0.0, np.log(3.0)]), 6)  # 2 min(1, 3) / (1 (1 + 3))
    0.5
    """
    lw = np.sort(np.asarray(log_weights, dtype=np.float64))
    n = lw.size
    w = np.exp(lw - lw[-1])
    return float(2 * np.dot(n - np.arange(1, n + 1), w) / ((n - 1) * w.sum()))


def constant_lr(lr):
    """lr(step) = lr."""
    return lambda step: lr


def cosine_lr(lr, total_steps, lr_min=0.0):
    """lr(n) = lr_min + (lr - lr_min) (1 + cos(pi min(n, T) / T)) / 2, T = ``total_steps``."""
    def schedule(step):
        t = min(step, total_steps) / total_steps
        return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * t))
    return schedule


def step_lr(lr, every, factor=0.5):
    """lr(n) = lr factor^floor(n / every)."""
    return lambda step: lr * factor ** (step // every)


def ess_fraction(log_weights):
    """ESS / N = (sum w)^2 / (N sum w^2) from log w (tensor of shape (N,)), via logsumexp."""
    lw = torch.as_tensor(log_weights, dtype=torch.float64)
    return math.exp(2 * torch.logsumexp(lw, 0).item()
                    - torch.logsumexp(2 * lw, 0).item()) / lw.numel()


def train_step(flow, optimizer, target, batch, step, lr_schedule, max_grad_norm=0.0):
    """One reverse-KL Adam step on draw ``step``; collective over the lattice's ranks.

    Parameters
    ----------
    flow : Flow
    optimizer : torch.optim.Optimizer
        Over ``flow.parameters()``; its learning rate is set to ``lr_schedule(step)``.
    target : lqcdflow.theories.base.Theory
        The target theory on a :class:`~lqcdflow.flows.torch_lattice.TorchLattice` of the
        flow's lattice: S = ``target.action(phi)``.
    batch : int
    step : int
        Step number, also the prior's draw number.
    lr_schedule : callable
        step -> learning rate, e.g. :func:`cosine_lr`.
    max_grad_norm : float
        Clip the gradient to this norm before the step (:func:`descend`); 0: no clipping.

    Returns
    -------
    TrainMetrics
        The loss, ESS / N and log weights of the batch before the update, identical on every
        rank.
    """
    lr = set_learning_rate(optimizer, lr_schedule(step))
    optimizer.zero_grad()
    phi, logq = flow.sample(batch, step)
    action = target.action(phi)
    loss = (logq + action).mean()
    descend(flow, optimizer, loss, step, target.lattice.comm, max_grad_norm)
    log_weights = -(action + logq).detach().to(device="cpu", dtype=torch.float64)
    return TrainMetrics(step, loss.item(), ess_fraction(log_weights), lr, log_weights)


def descend(model, optimizer, loss, step, comm, max_grad_norm=0.0):
    """The optimiser step of a model partitioned over the ranks of ``comm`` on ``loss``.

    The gradient g is summed over the ranks (:func:`allreduce_gradients`), checked
    (:func:`check_finite`) and, with ``max_grad_norm`` c > 0, scaled to at most norm c,

        g <- g min(1, c / |g|),  |g| = (sum over all parameters of g^2)^(1/2),

    which keeps a rare batch of huge weights (a flow at strong coupling meets them: its
    log q + S spans tens of units) from throwing Adam's moments off; every rank clips the same
    summed gradient, so the parameters stay identical.
    """
    loss.backward()
    allreduce_gradients(model, comm)
    check_finite(model, loss.item(), step)
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()


def set_learning_rate(optimizer, lr):
    """Set the learning rate of every parameter group; returns it."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def check_finite(model, loss, step):
    """DivergenceError unless the loss and every gradient are finite: one Adam step with NaN
    would make every parameter NaN. Both are the same on every rank (all-reduced)."""
    grads_finite = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters()
                       if p.grad is not None)
    if not (math.isfinite(loss) and grads_finite):
        what = f"loss = {loss}" if not math.isfinite(loss) else "a gradient is not finite"
        raise DivergenceError(f"training step {step}: {what}: the flow diverged (lower the "
                              "learning rate); its parameters were not updated, and the state "
                              "file keeps the last saved step")


def train(flow, optimizer, target, batch, steps, lr_schedule, start=0, max_grad_norm=0.0):
    """Steps ``start`` .. ``start + steps - 1`` of :func:`train_step`; returns their metrics."""
    return [train_step(flow, optimizer, target, batch, n, lr_schedule, max_grad_norm)
            for n in range(start, start + steps)]
