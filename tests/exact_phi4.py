"""Exact results of phi^4 theory for the tests: the free field (hopping form, lambda = 0) and
the D = 1 chain by a numerical transfer matrix; z-scores of an ensemble against them."""

import numpy as np

from lqcdflow.analysis.gamma import mean


def free_field_exact(shape, kappa):
    """chi, <S>/V and the zero-momentum correlator of the free field (hopping form, lambda = 0).

    <phi phi>(p) = 1 / (2 (1 - 2 kappa sum_mu cos p_mu));
    G(t) = (1/L_0) sum_{p_0} e^{i p_0 t} <phi phi>(p_0, 0, ..., 0).
    """
    d = len(shape)
    p0 = 2 * np.pi * np.arange(shape[0]) / shape[0]
    propagator = 1.0 / (2 * (1 - 2 * kappa * (np.cos(p0) + d - 1)))
    return 1.0 / (2 - 4 * kappa * d), 0.5, np.fft.ifft(propagator).real


def z_scores(series, volume, chi, s_density, correlator):
    checks = [(mean(series["m2"] / volume), chi), (mean(series["action"] / volume), s_density)]
    checks += [(mean(series["correlator"][:, t]), correlator[t])
               for t in range(len(correlator) // 2 + 1)]
    return [(e.value - exact) / e.error for e, exact in checks]


def chain_exact(length, kappa, lam, n_grid=801, cutoff=4.5):
    """Exact <phi_0 phi_t> and <S>/V of the periodic D = 1 chain by a numerical transfer matrix.

    T(phi, phi') = sqrt(w(phi) w(phi')) exp(2 kappa phi phi') dphi, w = exp(-phi^2 -
    lambda (phi^2 - 1)^2); <phi_0 phi_t> = Tr(Phi T^t Phi T^(L-t)) / Tr T^L.
    """
    phi, dphi = np.linspace(-cutoff, cutoff, n_grid, retstep=True)
    potential = phi**2 + lam * (phi**2 - 1) ** 2
    sqrt_w = np.exp(-0.5 * potential)
    t_matrix = sqrt_w[:, None] * np.exp(2 * kappa * np.outer(phi, phi)) * sqrt_w[None, :] * dphi
    eigval, eigvec = np.linalg.eigh(t_matrix)
    eigval = eigval / eigval.max()

    def power(n):
        return (eigvec * eigval**n) @ eigvec.T

    z = np.sum(eigval**length)
    g = np.array([np.trace(phi[:, None] * power(t) * phi[None, :] @ power(length - t)) / z
                  for t in range(length)])
    mean_potential = np.trace(potential[:, None] * power(length)) / z
    return g, -2 * kappa * g[1] + mean_potential
