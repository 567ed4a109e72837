"""Gauge-equivariant U(1) flows (lqcdflow.flows.gauge): the Jacobian against autodiff, inverse
round trips, gauge equivariance, the decomposed model against the single-process one (and
its proposals bitwise), and flow MCMC against the exact 2D results.

Marked ``mpi``: run on 1, 2 and 4 ranks, for every process grid the rank count allows.
"""

import math

import numpy as np
import pytest
import torch
from exact_u1 import plaquette, topological_susceptibility
from flow_helpers import ScaledLogJacobian
from mpi4py import MPI

from lqcdflow.analysis.gamma import mean
from lqcdflow.flows import cosine_lr, nmcmc, train
from lqcdflow.flows.gauge import CircularSplineMap, NCPMap, U1FlowSpec
from lqcdflow.parallel import Lattice
from lqcdflow.parallel.grid import valid_grids
from lqcdflow.theories.u1 import wrap

RTOL = 1e-12
COUPLINGS = ["ncp", "spline"]


def make_flow(lattice, n_layers=4, beta=1.0, scale=2.0, coupling="ncp"):
    """A flow far from the identity (weights scaled by ``scale``), the same on every rank."""
    spec = U1FlowSpec(tuple(lattice.shape), n_layers, (8,), 3, beta=beta, seed=3,
                      coupling=coupling, bins=4)
    flow = spec.build(lattice, init_seed=1)
    with torch.no_grad():
        for p in flow.parameters():
            p.mul_(scale)
    return spec, flow


def gauge_transform(theta, alpha):
    """theta_mu(x) + alpha(x) - alpha(x + e_mu), wrapped (one process: torch.roll)."""
    steps = [alpha - torch.roll(alpha, -1, 1 + mu) for mu in range(2)]
    return wrap(theta + torch.stack(steps, dim=-1), torch)


def local_block(tensor, lat):
    return tensor[(slice(None), *lat.local_slices())]


def angle_distance(a, b):
    return wrap(a - b, torch).abs().max().item()


@pytest.mark.parametrize("circle_map", [NCPMap(3), CircularSplineMap(5)],
                         ids=["ncp", "spline"])
def test_circle_map_is_an_increasing_bijection_with_its_derivative(circle_map):
    torch.manual_seed(0)
    x = torch.linspace(-math.pi, math.pi, 2001, dtype=torch.float64)[:-1].reshape(1, -1)
    out = (2 * torch.randn(1, circle_map.channels, 1, dtype=torch.float64)).expand(
        1, circle_map.channels, 2000).clone()  # one map
    out[:, -1] = 0.7  # the rotation t
    y, log_derivative = circle_map.forward(x, out)
    assert torch.all(wrap(y - 0.7, torch).diff() > 0)  # increasing before the rotation
    h = 1e-6
    numeric = (circle_map.forward(x + h, out)[0] - circle_map.forward(x - h, out)[0]) / (2 * h)
    assert torch.allclose(torch.log(numeric[:, 1:-1]), log_derivative[:, 1:-1], atol=1e-6)
    back, log_back = circle_map.inverse(y, out)
    # x is recovered up to rounding times the inverse's slope, up to 1e6 where a spline is flat
    assert angle_distance(circle_map.forward(back, out)[0], y) < 1e-13
    assert angle_distance(back, x) < 1e-10
    assert torch.allclose(log_back, log_derivative, rtol=0, atol=1e-8)


def test_circular_spline_is_smooth_across_pi():
    """h' is continuous across -pi = pi (d_K = d_0), and a zero conditioner output is the
    identity."""
    spline = CircularSplineMap(4)
    out = torch.randn(1, spline.channels, 1, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(1)).expand(1, spline.channels, 2)
    ends = torch.tensor([[-math.pi, math.pi - 1e-9]], dtype=torch.float64)
    _, log_derivative = spline.forward(ends, out)
    assert abs(log_derivative[0, 0] - log_derivative[0, 1]) < 1e-7
    x = torch.linspace(-math.pi, 3.0, 7, dtype=torch.float64).reshape(1, -1)
    y, log_derivative = spline.forward(x, torch.zeros(1, spline.channels, 7,
                                                      dtype=torch.float64))
    assert angle_distance(y, x) < 1e-14 and log_derivative.abs().max() < 1e-14


@pytest.mark.parametrize("coupling", COUPLINGS)
@pytest.mark.parametrize("shape", [(4, 4), (8, 4)])
def test_log_jacobian_equals_autodiff_determinant(shape, coupling):
    lat = Lattice(shape, comm=MPI.COMM_SELF)
    _, flow = make_flow(lat, n_layers=8, coupling=coupling)
    x = flow.prior.sample(1, draw=0)
    zero = torch.zeros(1, dtype=torch.float64)

    def f(v):
        return flow(v.reshape(x.shape), zero)[0].reshape(-1)

    jac = torch.autograd.functional.jacobian(f, x.reshape(-1))
    sign, logdet = torch.linalg.slogdet(jac)
    assert sign > 0 and abs(logdet.item()) > 0.1
    assert abs(-flow(x, zero)[1].item() - logdet.item()) <= 1e-12 * max(1, abs(logdet.item()))


@pytest.mark.parametrize("coupling", COUPLINGS)
def test_inverse_round_trip_and_the_prior(coupling):
    lat = Lattice((8, 8), comm=MPI.COMM_SELF)
    _, flow = make_flow(lat, n_layers=8, coupling=coupling)
    z = flow.prior.sample(5, draw=1)
    assert z.shape == (5, 8, 8, 2) and z.abs().max() < math.pi
    assert torch.equal(flow.prior.sample(2, draw=1, start=3), z[3:])
    logr = flow.prior.log_prob(z)
    assert torch.all(logr == -128 * math.log(2 * math.pi))
    theta, logq = flow(z, logr)
    assert angle_distance(theta, z) > 1.0
    back, logr_back = flow.reverse(theta, logq)
    # bisection (ncp) inverts to the last bit; the spline's closed form loses rounding times
    # its inverse's slope, large where a random spline is flat, and log r then carries that
    # error times d log h'/dx (1.1e-13 relative on one machine, below 1e-13 on another)
    assert angle_distance(back, z) < (1e-12 if coupling == "ncp" else 1e-9)
    assert torch.allclose(logr_back, logr, rtol=1e-13 if coupling == "ncp" else 1e-11, atol=0)


@pytest.mark.parametrize("coupling", COUPLINGS)
def test_flow_commutes_with_gauge_transformations(coupling):
    """f(g theta) = g f(theta) and log q(g theta) = log q(theta) for a random gauge
    transformation g, whatever the weights; a layer that moved links by their own angle
    instead of the plaquette's (not gauge invariant) would fail."""
    lat = Lattice((8, 8), comm=MPI.COMM_SELF)
    _, flow = make_flow(lat, n_layers=8, coupling=coupling)
    theta = flow.prior.sample(3, draw=2)
    alpha = torch.from_numpy(np.random.default_rng(5).uniform(-math.pi, math.pi, (3, 8, 8)))
    zero = torch.zeros(3, dtype=torch.float64)
    y, logq = flow(theta, zero)
    y_g, logq_g = flow(gauge_transform(theta, alpha), zero)
    assert angle_distance(y_g, gauge_transform(y, alpha)) < 1e-12
    assert torch.allclose(logq_g, logq, rtol=1e-13, atol=0)
    assert angle_distance(y, theta) > 1.0


@pytest.mark.mpi
@pytest.mark.parametrize("coupling", COUPLINGS)
def test_decomposed_flow_equals_single_process(comm, coupling):
    """Outputs, log q and parameter gradients of the reverse-KL loss equal the one-process
    model to 1e-12 on every grid; without autograd the proposals and log q are bitwise."""
    from lqcdflow.flows import allreduce_gradients

    shape = (8, 8)
    single = Lattice(shape, comm=MPI.COMM_SELF)
    spec, ref = make_flow(single, coupling=coupling)
    phi_ref, logq_ref = ref.sample(3, draw=2)
    loss_ref = (logq_ref + spec.target(single).action(phi_ref)).mean()
    loss_ref.backward()
    grads = {k: p.grad.clone() for k, p in ref.named_parameters()}
    with torch.no_grad():
        exact_ref, exact_logq = ref.sample(5, draw=4)
    for grid in valid_grids(shape, comm.Get_size()):
        lat = Lattice(shape, comm=comm, grid=grid)
        _, flow = make_flow(lat, coupling=coupling)
        phi, logq = flow.sample(3, draw=2)
        loss = (logq + spec.target(lat).action(phi)).mean()
        assert angle_distance(phi.detach(), local_block(phi_ref.detach(), lat)) < 1e-12
        assert torch.allclose(logq, logq_ref, rtol=RTOL, atol=0), grid
        loss.backward()
        allreduce_gradients(flow, lat.comm)
        for k, p in flow.named_parameters():
            assert torch.allclose(p.grad, grads[k], rtol=1e-10, atol=1e-12), (grid, k)
        with torch.no_grad():
            for batch, start in ((5, 0), (2, 3)):
                theta, lq = flow.sample(batch, draw=4, start=start)
                assert torch.equal(theta, local_block(exact_ref[start:start + batch], lat))
                assert torch.equal(lq, exact_logq[start:start + batch]), (grid, batch)


def exactness_z_scores(proposer, spec, lat, n, seed=9):
    """z-scores of <cos theta_P> and chi_t = <Q^2>/V of a flow chain of n proposals against
    the exact torus results (Gamma-method errors, autocorrelation included)."""
    res, _ = nmcmc(proposer, spec.theory(lat), spec.target(lat), n, 500, seed=seed,
                   draw=10**6)
    volume = lat.volume
    cos, chi = mean(res.observables["plaquette"]), \
        mean(res.observables["topological_charge"] ** 2 / volume)
    return ((cos.value - plaquette(spec.beta, volume)) / cos.error,
            (chi.value - topological_susceptibility(spec.beta, volume)) / chi.error)


@pytest.mark.slow
@pytest.mark.parametrize("coupling", COUPLINGS)
def test_flow_mcmc_is_exact_for_u1(coupling):
    """4x4 torus, beta = 1: a briefly trained 4-layer flow's chain reproduces the exact
    <cos theta_P> and chi_t within 4.5 sigma (ncp: z = 0.6, -1.1; spline: 0.4, 0.3); with
    log|J| scaled by 1/2 the same chain fails (plaquette z = 12.7; spline 11.6)."""
    lat = Lattice((4, 4), comm=MPI.COMM_SELF)
    spec, flow = make_flow(lat, n_layers=4, beta=1.0, scale=1.0, coupling=coupling)
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-2)
    train(flow, optimizer, spec.target(lat), 64, 100, cosine_lr(1e-2, 100))
    with torch.no_grad():
        z_exact = exactness_z_scores(ScaledLogJacobian(flow, 1.0), spec, lat, 20000)
        z_wrong = exactness_z_scores(ScaledLogJacobian(flow, 0.5), spec, lat, 20000)
    assert max(map(abs, z_exact)) < 4.5, z_exact
    assert max(map(abs, z_wrong)) > 4.5, z_wrong


def test_spec_errors():
    with pytest.raises(ValueError, match="multiples of 4"):
        U1FlowSpec((6, 8), 2, (8,), 3, beta=1.0, seed=1)
    with pytest.raises(ValueError, match="2D lattice"):
        U1FlowSpec((4, 4, 4), 2, (8,), 3, beta=1.0, seed=1)
