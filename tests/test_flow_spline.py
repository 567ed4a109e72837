"""The rational-quadratic spline of lqcdflow.flows.spline against autodiff and its inverse."""

import pytest
import torch

from lqcdflow.flows import RationalQuadraticSpline

BINS, BOUND = 6, 3.0


def spline(seed, scale=2.0, sites=500):
    gen = torch.Generator().manual_seed(seed)
    theta = scale * torch.randn(sites, 3 * BINS - 1, generator=gen, dtype=torch.float64)
    return RationalQuadraticSpline(theta, BINS, BOUND)


def points(sites=500):
    # covers both tails and lands exactly on the interval's ends
    x = torch.linspace(-1.5 * BOUND, 1.5 * BOUND, sites, dtype=torch.float64)
    x[0], x[-1] = -BOUND, BOUND
    return x


def test_zero_parameters_give_the_identity():
    s = RationalQuadraticSpline(torch.zeros(7, 3 * BINS - 1, dtype=torch.float64), BINS, BOUND)
    x = torch.linspace(-BOUND, BOUND, 7, dtype=torch.float64)
    y, log_slope = s.forward(x)
    assert torch.allclose(y, x, rtol=0, atol=1e-14)
    assert torch.allclose(log_slope, torch.zeros(7, dtype=torch.float64), atol=1e-14)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_log_slope_is_the_derivative_and_inverse_inverts(seed):
    s = spline(seed)
    x = points().requires_grad_(True)
    y, log_slope = s.forward(x)
    (grad,) = torch.autograd.grad(y.sum(), x)  # element-wise map: the diagonal Jacobian
    assert torch.allclose(log_slope, torch.log(grad), rtol=0, atol=1e-10)
    assert (y.detach()[1:] != x.detach()[1:]).any()
    inside = x.detach().abs() < BOUND
    assert torch.equal(y.detach()[~inside], x.detach()[~inside])  # identity tails
    back, log_slope_back = s.inverse(y.detach())
    # x is recovered up to rounding times the inverse's slope, large where g is flat
    assert torch.allclose(s.forward(back)[0], y.detach(), rtol=0, atol=1e-13)
    assert torch.allclose(back, x.detach(), rtol=0, atol=1e-9)
    assert torch.allclose(log_slope_back, log_slope.detach(), rtol=0, atol=1e-10)


def test_one_spline_is_monotone_and_continuous():
    """The same parameters at every point: g increases strictly, with no jump at the knots."""
    n = 20001
    gen = torch.Generator().manual_seed(5)
    theta = 2 * torch.randn(1, 3 * BINS - 1, generator=gen, dtype=torch.float64)
    s = RationalQuadraticSpline(theta.expand(n, -1), BINS, BOUND)
    x = torch.linspace(-BOUND - 0.5, BOUND + 0.5, n, dtype=torch.float64)
    y, log_slope = s.forward(x)
    steps = torch.diff(y)
    assert (steps > 0).all()
    # a jump would be a step far larger than slope * spacing
    assert (steps <= 1.01 * torch.exp(log_slope).max() * (x[1] - x[0])).all()
