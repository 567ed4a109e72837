"""Exact results of the 2D Ising model on a periodic L x L lattice, for the tests.

Weight exp(-beta E), E = -sum_{x,mu} s_x s_{x+mu}. Row transfer matrix over the 2^L spin rows
r, r' of neighbouring time slices,

    T(r, r') = exp(beta [b(r)/2 + v(r, r') + b(r')/2]),  b(r) = sum_i r_i r_{i+1},
    v(r, r') = sum_i r_i r'_i,

so that Z = Tr T^L. <E> = -d log Z / d beta = -L Tr(T' T^(L-1)) / Tr T^L with
T' = [b/2 + v + b'/2] * T (entrywise). The distribution of M = sum_x s_x comes from
Z(theta) = Tr (T D_theta)^L, D_theta = diag(exp(i theta m(r))): at theta_k = pi k / (V + 1),
Z(theta_k) e^{i theta_k V} = sum_j P_j e^{2 pi i k j / (V + 1)} with M = 2 j - V, which a
discrete Fourier transform inverts.
"""

import numpy as np


def ising_2d(L, beta):
    """{"energy_density": <E>/V, "abs_m": <|M|>/V, "m2": <M^2>/V^2, "m4": <M^4>/V^4}."""
    rows = ((np.arange(2**L)[:, None] >> np.arange(L)) & 1) * 2.0 - 1.0
    inside = (rows * np.roll(rows, 1, axis=1)).sum(1)
    bonds = 0.5 * inside[:, None] + rows @ rows.T + 0.5 * inside[None, :]
    # the largest weight is scaled out of T (it cancels in every ratio)
    transfer = np.exp(beta * (bonds - bonds.max()))
    power = np.linalg.matrix_power(transfer, L - 1)
    z = np.trace(transfer @ power)
    energy = -L * np.trace((bonds * transfer) @ power) / z
    V = L * L
    magnet = rows.sum(1)
    theta = np.pi * np.arange(V + 1) / (V + 1)
    z_theta = np.array([np.trace(np.linalg.matrix_power(transfer * np.exp(1j * t * magnet), L))
                        for t in theta])
    p = (np.fft.fft(z_theta * np.exp(1j * theta * V)) / (V + 1)).real
    p /= p.sum()
    m = 2.0 * np.arange(V + 1) - V
    return {"energy_density": energy / V, "abs_m": p @ np.abs(m) / V,
            "m2": p @ m**2 / V**2, "m4": p @ m**4 / V**4}


def enumerated(L, beta):
    """The same by summing over all 2^(L^2) configurations (small L only)."""
    V = L * L
    spins = ((np.arange(2**V)[:, None] >> np.arange(V)) & 1) * 2.0 - 1.0
    grid = spins.reshape(-1, L, L)
    energy = -(grid * np.roll(grid, 1, 1) + grid * np.roll(grid, 1, 2)).sum((1, 2))
    weight = np.exp(-beta * (energy - energy.min()))
    weight /= weight.sum()
    m = spins.sum(1)
    return {"energy_density": weight @ energy / V, "abs_m": weight @ np.abs(m) / V,
            "m2": weight @ m**2 / V**2, "m4": weight @ m**4 / V**4}
