"""Model-parallel flow of lqcdflow.flows against the single-process model.

The decomposed model on ``comm`` (every valid process grid) must give the outputs,
log-densities and parameter gradients of the same model on one process (MPI.COMM_SELF), in
float64 to 1e-12. Marked ``mpi``: run on 1, 2 and 4 ranks.
"""

import numpy as np
import pytest
import torch
from mpi4py import MPI

from lqcdflow.flows import (STREAM_FLOW_PRIOR, AffineCoupling, Flow, GaussianPrior,
                            PeriodicConv, affine_couplings, allreduce_gradients, checkerboard,
                            conditioner, spline_couplings)
from lqcdflow.flows.state import standard_phi4
from lqcdflow.flows.torch_lattice import TorchLattice
from lqcdflow.parallel import Lattice
from lqcdflow.parallel.grid import valid_grids
from lqcdflow.rng import STREAM_ACCEPT, STREAM_HOT_START, STREAM_MOMENTA
from lqcdflow.theories.phi4 import Phi4, Phi4Couplings

SHAPES = [(8,), (4, 8), (4, 2, 4)]
M2, LAM = -4.0, 8.0  # the tutorial's point (D = 2)
RTOL = 1e-12
# coupling layers under test; the spline's small bound puts some values in its linear tails
KINDS = {
    "affine": lambda lat, n: affine_couplings(lat, n, hidden=(8, 8), kernel_size=3),
    "affine-z2": lambda lat, n: affine_couplings(lat, n, hidden=(8, 8), z2=True),
    "spline": lambda lat, n: spline_couplings(lat, n, bins=4, bound=2.0, hidden=(8,)),
    "spline-z2": lambda lat, n: spline_couplings(lat, n, bins=4, bound=2.0, hidden=(8,),
                                                 z2=True),
}


def local_block(tensor, lat):
    """This rank's block of a (batch, *shape) tensor."""
    return tensor[(Ellipsis, *lat.local_slices())]


def make_flow(lat, seed=3, n_layers=4, dtype=torch.float64, kind="affine"):
    torch.manual_seed(1234)  # the same on every rank: identical initial parameters
    layers = KINDS[kind](lat, n_layers)
    flow = Flow(GaussianPrior(lat, seed, dtype=dtype), layers).to(dtype)
    with torch.no_grad():  # larger weights, so that the layers are far from the identity
        for p in flow.parameters():
            p.mul_(1.5)
    return flow


def reverse_kl_loss(flow, lat, batch=3, draw=2):
    phi, logq = flow.sample(batch, draw)
    loss = (logq + standard_phi4(TorchLattice(lat), M2, LAM).action(phi)).mean()
    return phi, logq, loss


def assert_close(a, b, what):
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    err = ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()
    assert err <= RTOL, f"{what}: relative deviation {err:.3g}"


@pytest.mark.mpi
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_decomposed_flow_equals_single_process(shape, kind, comm):
    ref_lat = Lattice(shape, comm=MPI.COMM_SELF)
    ref = make_flow(ref_lat, kind=kind)
    phi_ref, logq_ref, loss_ref = reverse_kl_loss(ref, ref_lat)
    loss_ref.backward()
    ref_grads = {k: p.grad.clone() for k, p in ref.named_parameters()}
    assert loss_ref.item() != 0 and all(g.abs().max() > 0 for g in ref_grads.values())
    for grid in valid_grids(shape, comm.Get_size()):
        lat = Lattice(shape, comm=comm, grid=grid)
        flow = make_flow(lat, kind=kind)
        for k, v in ref.state_dict().items():
            assert torch.equal(flow.state_dict()[k], v)
        phi, logq, loss = reverse_kl_loss(flow, lat)
        assert_close(phi.detach(), local_block(phi_ref.detach(), lat), f"outputs, grid {grid}")
        for b in range(phi.shape[0]):  # and the gathered global field
            gathered = lat.gather(phi[b].detach().numpy())
            if lat.rank == 0:
                assert_close(torch.from_numpy(gathered), phi_ref[b].detach(), f"gather {grid}")
        assert_close(logq.detach(), logq_ref.detach(), f"log q, grid {grid}")
        assert_close(loss.detach(), loss_ref.detach(), f"loss, grid {grid}")
        loss.backward()
        allreduce_gradients(flow, lat.comm)
        for k, p in flow.named_parameters():
            assert_close(p.grad, ref_grads[k], f"gradient of {k}, grid {grid}")
        # the reverse pass recovers the prior sample and its log-density on every grid
        z, logr = flow.reverse(phi.detach(), logq.detach())
        z_prior = flow.prior.sample(3, 2)
        assert torch.allclose(z, z_prior, rtol=0, atol=1e-12)
        assert_close(logr.detach(), flow.prior.log_prob(z_prior), f"log r, grid {grid}")


@pytest.mark.mpi
def test_training_steps_keep_parameters_identical(comm):
    """Adam steps with all-reduced gradients: the same parameters on every rank, equal to
    the single-process training."""
    shape = (4, 4)

    def train(lat, steps=3):
        flow = make_flow(lat, n_layers=2)
        opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
        for step in range(steps):
            opt.zero_grad()
            loss = reverse_kl_loss(flow, lat, batch=4, draw=step)[2]
            loss.backward()
            allreduce_gradients(flow, lat.comm)
            opt.step()
        return torch.cat([p.detach().reshape(-1) for p in flow.parameters()])

    ref = train(Lattice(shape, comm=MPI.COMM_SELF))
    for grid in valid_grids(shape, comm.Get_size()):
        params = train(Lattice(shape, comm=comm, grid=grid))
        everywhere = comm.allgather(params.numpy())
        assert all(np.array_equal(p, everywhere[0]) for p in everywhere)  # bitwise
        assert torch.allclose(params, ref, rtol=0, atol=1e-10), grid


@pytest.mark.mpi
def test_prior_is_decomposition_and_batch_independent(comm):
    shape = (4, 2, 4)
    ref = GaussianPrior(Lattice(shape, comm=MPI.COMM_SELF), seed=11)
    z_ref = ref.sample(4, draw=5)
    assert torch.equal(ref.sample(2, draw=5, start=2), z_ref[2:])
    assert not torch.equal(ref.sample(4, draw=6), z_ref)
    assert not torch.equal(GaussianPrior(ref.lattice, seed=12).sample(4, draw=5), z_ref)
    for grid in valid_grids(shape, comm.Get_size()):
        lat = Lattice(shape, comm=comm, grid=grid)
        prior = GaussianPrior(lat, seed=11)
        z = prior.sample(4, draw=5)
        assert torch.equal(z, local_block(z_ref, lat))  # bitwise
        assert_close(prior.log_prob(z), ref.log_prob(z_ref), f"log r, grid {grid}")
    assert STREAM_FLOW_PRIOR not in (STREAM_MOMENTA, STREAM_ACCEPT, STREAM_HOT_START)


@pytest.mark.mpi
@pytest.mark.parametrize("shape", [(8,), (4, 8), (4, 2, 4)])
def test_flow_target_is_the_theory_action_bitwise(shape, comm):
    """The flows' S per sample (Phi4 on a TorchLattice) has the bits of the NumPy theory's
    reproducible action on one process, on every grid; and its gradient is dS/dphi."""
    gen = np.random.default_rng(4)
    phis = comm.bcast(gen.standard_normal((2,) + shape))
    ref = Phi4(Lattice(shape, comm=MPI.COMM_SELF),
               Phi4Couplings.standard(M2, LAM, len(shape)))
    expected = torch.tensor([ref.action(p) for p in phis], dtype=torch.float64)
    for grid in valid_grids(shape, comm.Get_size()):
        lat = Lattice(shape, comm=comm, grid=grid)
        phi = local_block(torch.from_numpy(phis), lat).clone().requires_grad_()
        got = standard_phi4(TorchLattice(lat), M2, LAM).action(phi)
        assert torch.equal(got.detach(), expected), grid
        got.sum().backward()
        force = np.stack([ref.force(p) for p in phis])
        assert_close(phi.grad, local_block(torch.from_numpy(force), lat), f"dS/dphi {grid}")


@pytest.mark.mpi
@pytest.mark.parametrize("kind", KINDS)
def test_proposals_are_bitwise_on_every_grid_and_batch(kind, comm):
    """Without autograd (how proposals are made) every grid and batch gives the proposals and
    log q of one process bit for bit (with autograd only to 1e-12: torch's convolution)."""
    shape = (4, 8)
    with torch.no_grad():
        ref = make_flow(Lattice(shape, comm=MPI.COMM_SELF), kind=kind)
        phi_ref, logq_ref = ref.sample(5, draw=3)
        for grid in valid_grids(shape, comm.Get_size()):
            lat = Lattice(shape, comm=comm, grid=grid)
            flow = make_flow(lat, kind=kind)
            for batch, start in ((5, 0), (2, 3)):
                phi, logq = flow.sample(batch, draw=3, start=start)
                assert torch.equal(phi, local_block(phi_ref[start:start + batch], lat)), grid
                assert torch.equal(logq, logq_ref[start:start + batch]), (grid, batch)


def test_checkerboard_uses_global_coordinates():
    lat = Lattice((4, 4), comm=MPI.COMM_SELF)
    m0, m1 = checkerboard(lat, 0), checkerboard(lat, 1)
    assert torch.equal(m0 + m1, torch.ones(4, 4))
    assert m0[0, 0] == 1 and m0[0, 1] == 0 and m0[1, 1] == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(2, 2), (4, 1), (4,), (2, 1, 2)])
def test_log_jacobian_equals_autodiff_determinant(shape, kind):
    lat = Lattice(shape, comm=MPI.COMM_SELF)
    flow = make_flow(lat, n_layers=3, kind=kind)
    x = flow.prior.sample(1, draw=0)
    zero = torch.zeros(1, dtype=torch.float64)
    y, logq = flow(x, zero)

    def f(v):
        return flow(v.reshape(x.shape), zero)[0].reshape(-1)

    jac = torch.autograd.functional.jacobian(f, x.reshape(-1))
    sign, logdet = torch.linalg.slogdet(jac)
    assert sign > 0
    assert abs(-logq.item() - logdet.item()) <= 1e-12 * max(1.0, abs(logdet.item()))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(6,), (4, 6), (2, 4, 2)])
def test_inverse_round_trip(shape, kind):
    lat = Lattice(shape, comm=MPI.COMM_SELF)
    flow = make_flow(lat, n_layers=6, kind=kind)
    x = flow.prior.sample(5, draw=1)
    logr = flow.prior.log_prob(x)
    y, logq = flow(x, logr)
    assert (y - x).abs().max() > 0.1
    back, logr_back = flow.reverse(y, logq)
    assert torch.allclose(back, x, rtol=0, atol=1e-12)
    assert torch.allclose(logr_back, logr, rtol=1e-13, atol=0)
    for layer in flow.layers:  # each layer on its own, both directions
        y1, l1 = layer.reverse(*layer(x, logr))
        y2, l2 = layer(*layer.reverse(x, logr))
        assert torch.allclose(y1, x, atol=1e-12) and torch.allclose(y2, x, atol=1e-12)
        assert torch.allclose(l1, logr) and torch.allclose(l2, logr)


@pytest.mark.parametrize("kind", ["affine-z2", "spline-z2"])
def test_z2_layers_commute_with_sign_flip(kind):
    """y(-x) = -y(x) and log q(-phi) = log q(phi), for weights far from the identity."""
    lat = Lattice((4, 6), comm=MPI.COMM_SELF)
    flow = make_flow(lat, n_layers=4, kind=kind)
    x = flow.prior.sample(3, draw=0)
    logr = flow.prior.log_prob(x)
    y, logq = flow(x, logr)
    y_flip, logq_flip = flow(-x, logr)
    assert (y + x).abs().max() > 0.1
    assert torch.allclose(y_flip, -y, rtol=0, atol=1e-13)
    assert torch.allclose(logq_flip, logq, rtol=1e-13, atol=0)
    plain = make_flow(lat, n_layers=4, kind=kind.split("-")[0])  # not equivariant
    assert not torch.allclose(plain(-x, logr)[0], -plain(x, logr)[0], atol=1e-3)


def test_float32_flow_runs():
    lat = Lattice((4, 4), comm=MPI.COMM_SELF)
    flow = make_flow(lat, dtype=torch.float32)
    phi, logq = flow.sample(2, draw=0)
    assert phi.dtype == torch.float32 and torch.isfinite(logq).all()
    assert logq.dtype == torch.float64  # reproducible sums are float64


def test_layer_errors():
    with pytest.raises(ValueError, match="D = 1, 2, 3"):
        PeriodicConv(Lattice((2, 2, 2, 2), comm=MPI.COMM_SELF), 1, 1)
    with pytest.raises(ValueError, match="odd"):
        PeriodicConv(Lattice((4, 4), comm=MPI.COMM_SELF), 1, 1, kernel_size=2)


def test_conditioner_shape():
    lat = Lattice((4, 6), comm=MPI.COMM_SELF)
    net = conditioner(lat, hidden=(8, 8)).double()
    out = net(torch.randn(3, 1, 4, 6, dtype=torch.float64))
    assert out.shape == (3, 2, 4, 6) and out.abs().max() <= 1
    assert isinstance(AffineCoupling(net, lat, 0).mask, torch.Tensor)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_matches_cpu(kind):
    lat = Lattice((4, 8), comm=MPI.COMM_SELF)
    cpu = make_flow(lat, kind=kind)
    gpu = make_flow(lat, kind=kind)
    gpu.prior = GaussianPrior(lat, 3, device="cuda")
    gpu.to("cuda")
    phi_c, logq_c, loss_c = reverse_kl_loss(cpu, lat)
    phi_g, logq_g, loss_g = reverse_kl_loss(gpu, lat)
    assert phi_g.is_cuda
    assert_close(phi_g.detach().cpu(), phi_c.detach(), "outputs")
    assert_close(logq_g.detach().cpu(), logq_c.detach(), "log q")
    loss_c.backward()
    loss_g.backward()
    for (k, pc), pg in zip(cpu.named_parameters(), gpu.parameters()):
        assert_close(pg.grad.cpu(), pc.grad, f"gradient of {k}")
