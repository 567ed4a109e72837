"""Diffusion-model proposals (lqcdflow.flows.diffusion): the log-density of the sampler's map is
exact (against the autodiff Jacobian), the model commutes with phi -> -phi and with the
translations that keep the checkerboard, the decomposed model equals the single-process one
(outputs, log q, denoising loss and gradients, float64 to 1e-12, on 1, 2 and 4 ranks), and
independence Metropolis with a model trained by denoising score matching on exact free-field
samples reproduces the exact <M^2>/V and <S>/V, while the same proposals with a deliberately
wrong log-density (the prior's at the proposal) fail that check.
"""

import math

import numpy as np
import pytest
import torch
from flow_helpers import theories
from mpi4py import MPI

from lqcdflow.analysis.gamma import mean
from lqcdflow.flows import GaussianPrior, allreduce_gradients, nmcmc
from lqcdflow.flows import constant_lr
from lqcdflow.flows.diffusion import (DenoisingBatches, HollowScore, ProbabilityFlow,
                                      VPSchedule, denoising_loss, denoising_step)
from lqcdflow.parallel import Lattice
from lqcdflow.parallel.grid import valid_grids

Z_MAX = 4.5
RTOL = 1e-12


def make_model(lattice, n_steps=6, scale=0.1):
    """A ProbabilityFlow whose last layer is random (an untrained one is the identity)."""
    torch.manual_seed(11)  # the same on every rank
    score = HollowScore(lattice, VPSchedule(), hidden=(8, 8))
    with torch.no_grad():
        for p in score.net[-1].parameters():
            p.normal_(0.0, scale)
    return ProbabilityFlow(GaussianPrior(lattice, 1), score, n_steps=n_steps)


@pytest.mark.parametrize("shape", [(4, 4), (4, 2, 2)])
def test_log_density_is_that_of_the_map(shape):
    """log q(phi) = log r(z) - log|det dphi/dz| with the determinant of the full Jacobian."""
    model = make_model(Lattice(shape, comm=MPI.COMM_SELF))
    z = model.prior.sample(1, 0)
    with torch.no_grad():
        phi, logq = model(z, model.prior.log_prob(z))
    assert (phi - z).abs().max() > 0.1  # far from the identity

    def volume_map(flat):
        return model(flat.reshape(z.shape), torch.zeros(1))[0].reshape(-1)

    sign, log_det = torch.linalg.slogdet(torch.autograd.functional.jacobian(volume_map,
                                                                            z.reshape(-1)))
    assert sign == 1.0  # orientation kept: every step is monotone at every site
    expected = model.prior.log_prob(z) - log_det
    assert abs(float(logq - expected)) < 1e-10 * abs(float(expected))


def test_symmetries():
    """phi(-z) = -phi(z) and phi(T z) = T phi(z) for shifts T by (1, 1) or (2, 0), with the
    same log q; a shift by (1, 0) swaps the checkerboard and does not commute."""
    model = make_model(Lattice((6, 6), comm=MPI.COMM_SELF))
    z = model.prior.sample(2, 0)
    with torch.no_grad():
        phi, logq = model(z, model.prior.log_prob(z))
        mirrored, logq_m = model(-z, model.prior.log_prob(-z))
        assert torch.equal(mirrored, -phi) and torch.equal(logq_m, logq)
        for shift, commutes in (((1, 1), True), ((2, 0), True), ((1, 0), False)):
            moved = torch.roll(z, shift, (1, 2))
            phi_t, logq_t = model(moved, model.prior.log_prob(moved))
            deviation = (phi_t - torch.roll(phi, shift, (1, 2))).abs().max()
            assert (deviation < 1e-12) == commutes, (shift, deviation)
            if commutes:
                assert torch.allclose(logq_t, logq, rtol=1e-13)


def local_block(tensor, lattice):
    return tensor[(Ellipsis, *lattice.local_slices())]


def close(a, b):
    return float((a - b).abs().max() / b.abs().max()) <= RTOL


@pytest.mark.mpi
@pytest.mark.parametrize("shape", [(8, 8), (8, 4, 4)])
def test_decomposed_model_equals_single_process(shape, comm):
    reference_lattice = Lattice(shape, comm=MPI.COMM_SELF)
    reference = make_model(reference_lattice)
    data = reference.prior.sample(5, 3)  # any fields: the loss is defined for all
    phi_ref, logq_ref = reference.sample(3, 0)
    batches = DenoisingBatches(data, reference_lattice, 4, 2, 1e-3)
    loss_ref = denoising_loss(reference.score, *batches(7))
    loss_ref.backward()
    grads_ref = [p.grad.clone() for p in reference.parameters()]
    for grid in valid_grids(shape, comm.Get_size()):
        if any(n // g < 2 for n, g in zip(shape, grid)):
            continue  # the features need halos of width 2
        lattice = Lattice(shape, comm=comm, grid=grid)
        model = make_model(lattice)
        phi, logq = model.sample(3, 0)
        assert close(phi.detach(), local_block(phi_ref.detach(), lattice)), grid
        assert close(logq.detach(), logq_ref.detach()), grid
        batches = DenoisingBatches(local_block(data, lattice), lattice, 4, 2, 1e-3)
        loss = denoising_loss(model.score, *batches(7))
        assert close(loss.detach(), loss_ref.detach()), grid
        loss.backward()
        allreduce_gradients(model.score, comm)
        for p, g in zip(model.parameters(), grads_ref):
            assert close(p.grad, g), grid


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    """The model and its training batches on the GPU give the CPU's proposals, log q and
    denoising loss (float64, to 1e-12)."""
    lattice = Lattice((8, 8), comm=MPI.COMM_SELF)
    cpu, gpu = make_model(lattice), make_model(lattice)
    gpu.prior = GaussianPrior(lattice, 1, device="cuda")
    gpu.to("cuda")
    phi_c, logq_c = cpu.sample(3, 0)
    phi_g, logq_g = gpu.sample(3, 0)
    assert phi_g.is_cuda
    assert close(phi_g.detach().cpu(), phi_c.detach())
    assert close(logq_g.detach().cpu(), logq_c.detach())
    data = cpu.prior.sample(5, 3)
    loss_c = denoising_loss(cpu.score, *DenoisingBatches(data, lattice, 4, 2, 1e-3)(7))
    loss_g = denoising_loss(gpu.score, *DenoisingBatches(data.cuda(), lattice, 4, 2, 1e-3)(7))
    assert close(loss_g.detach().cpu(), loss_c.detach())


# --------------------------------------------------------------- exactness on the free field
L, M2 = 6, 1.0  # standard form: S = sum_x [sum_mu (phi_{x+mu} - phi_x)^2 + m^2 phi_x^2]


def free_field_samples(n, seed):
    """n exact samples of exp(-S): Gaussian with covariance (2K)^-1, K = -Laplacian + m^2."""
    volume = L * L
    index = np.arange(volume).reshape(L, L)
    k = np.eye(volume) * (4 + M2)
    for x in range(L):
        for y in range(L):
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                k[index[x, y], index[(x + dx) % L, (y + dy) % L]] -= 1
    chol = np.linalg.cholesky(np.linalg.inv(2 * k))
    z = np.random.default_rng(seed).standard_normal((volume, n))
    return torch.from_numpy(np.ascontiguousarray((chol @ z).T.reshape(n, L, L)))


class PriorAtTheProposal:
    """The trained model's proposals phi with log q = log r(phi), the prior's density at phi
    instead of the density of the map at phi: a wrong log-density. (Leaving out the Jacobian
    is not a test: for a nearly linear map log|det| is nearly the same for every z, and a
    constant error in log q cancels in the Metropolis ratio.)"""

    def __init__(self, model):
        self.model = model

    def sample(self, batch, draw, start=0):
        phi, _ = self.model.sample(batch, draw, start)
        return phi, self.model.prior.log_prob(phi)


@pytest.fixture(scope="module")
def trained():
    """A model trained by denoising score matching on 4096 exact free-field samples."""
    lattice = Lattice((L, L), comm=MPI.COMM_SELF)
    torch.manual_seed(1)
    score = HollowScore(lattice, VPSchedule(), hidden=(32, 32))
    optimizer = torch.optim.Adam(score.parameters())
    batches = DenoisingBatches(free_field_samples(4096, 5), lattice, 64, 1, 1e-3)
    losses = [denoising_step(score, optimizer, batches, step, constant_lr(3e-3)).loss
              for step in range(800)]
    assert np.mean(losses[-100:]) < 0.8 * np.mean(losses[:20])
    return lattice, ProbabilityFlow(GaussianPrior(lattice, 3), score, n_steps=30)


def free_field_z(result):
    """z-scores of <M^2>/V = 1/(2 m^2) and <S>/V = 1/2 (each Gaussian mode carries 1/2)."""
    volume = L * L
    checks = [(mean(result.observables["m"] ** 2 / volume), 1 / (2 * M2)),
              (mean(result.observables["action"] / volume), 0.5)]
    return [(e.value - exact) / e.error for e, exact in checks]


def test_corrected_chain_is_exact_and_a_wrong_log_density_is_detected(trained):
    lattice, model = trained
    result, _ = nmcmc(model, *theories(lattice, M2, 0.0), 4000, 500, 7, 10**6)
    z = free_field_z(result)
    assert max(map(abs, z)) < Z_MAX, z
    assert 0.3 < result.acceptance < 1.0
    wrong, _ = nmcmc(PriorAtTheProposal(model), *theories(lattice, M2, 0.0), 4000, 500, 7,
                     10**6)
    z_wrong = free_field_z(wrong)
    assert max(map(abs, z_wrong)) > Z_MAX, z_wrong
    assert math.isfinite(result.ess) and result.ess > 0.1
