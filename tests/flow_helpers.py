"""Helpers shared by the flow tests: a small flow, its optimiser, and the free-field check of
flow MCMC (test_flow_train.py; a decomposed chain is bitwise the serial one, tested there)."""

import torch

from lqcdflow.analysis.gamma import mean
from lqcdflow.flows import FlowSpec, TorchLattice, nmcmc
from lqcdflow.flows.state import standard_phi4

M2, LAM = -4.0, 8.0


def spec_for(shape, m2=M2, lam=LAM, n_layers=2):
    return FlowSpec(shape=tuple(shape), n_layers=n_layers, hidden=(8, 8), kernel_size=3,
                    m2=m2, lam=lam, seed=7)


def theories(lat, m2, lam):
    """(theory, target) of nmcmc: standard-form phi^4 on ``lat`` and on TorchLattice(lat)."""
    return standard_phi4(lat, m2, lam), standard_phi4(TorchLattice(lat), m2, lam)


def setup(spec, lat, init_seed=0, mult=1.5):
    """A flow far from the identity (weights scaled by ``mult``) and its Adam optimiser."""
    flow = spec.build(lat, init_seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.mul_(mult)
    return flow, torch.optim.Adam(flow.parameters(), lr=1e-2)


class ScaledLogJacobian:
    """The flow with log q(phi) = log r(z) - scale sum_k log|det J_k| (wrong unless 1)."""

    def __init__(self, flow, scale):
        self.flow, self.scale = flow, scale

    def sample(self, batch, draw, start=0):
        z = self.flow.prior.sample(batch, draw, start)
        logr = self.flow.prior.log_prob(z)
        phi, minus_logj = self.flow(z, torch.zeros_like(logr))
        return phi, logr + self.scale * minus_logj


def free_field_z_scores(proposer, spec, lat, n, seed=9, batch=500, chain_spec=None):
    """z-scores of <M^2>/V - chi and <S>/V - 1/2 over an NMCMC chain of n proposals of the free
    field of ``spec`` (lam = 0, either form); the chain targets ``chain_spec`` (default
    ``spec``: a different one is a deliberately wrong target).

    S = sum_x [-h sum_mu phi_x phi_{x+mu} + c2 phi_x^2] is a Gaussian with
    <|phi~_p|^2> = 1 / (2 (c2 - h sum_mu cos p_mu)), so chi = <M^2>/V = 1 / (2 (c2 - h D))
    (standard form: 1 / (2 m2); hopping form: 1 / (2 (1 - 2 D kappa))), and <S>/V = 1/2
    (equipartition). The errors are the Gamma method's, with the chain's integrated
    autocorrelation time. ``batch`` proposals are drawn per flow evaluation (the chain does not
    depend on it). Collective over ``lat.comm``; the z-scores are the same on every rank.
    """
    chain_spec = chain_spec or spec
    res, _ = nmcmc(proposer, chain_spec.theory(lat), chain_spec.target(lat), n, batch,
                   seed=seed, draw=10**6)
    theory = spec.theory(lat)
    c, volume = theory.couplings, lat.volume
    chi_exact = 1 / (2 * (c.c2 - c.h * lat.ndim))
    chi = mean(res.observables["m"] ** 2 / volume)
    act = mean(res.observables["action"] / volume)
    return (chi.value - chi_exact) / chi.error, (act.value - 0.5) / act.error
