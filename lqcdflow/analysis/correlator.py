"""Time-slice correlator, effective mass and second-moment correlation length, as pyerrors Obs.

The measured correlator is C(t) = (1/V) sum_{t0} S(t0) S(t0 + t) with the time-slice sums
S(t) = sum_{x: x_0 = t} phi_x (not connected; in the symmetric phase <S(t)> = 0). It is
symmetrised, C(t) <- [C(t) + C(L_0 - t)] / 2, and analysed for t = 0..L_0/2.

Effective mass, exact for C(t) = A cosh(m (t - L_0/2)) (e.g. the free field, where
cosh m = (1 - 2 kappa (D - 1)) / (2 kappa)):

    m_eff(t) = arccosh( [C(t - 1) + C(t + 1)] / (2 C(t)) ),   1 <= t <= L_0/2,

left out where the argument is not above 1 (noise). Second-moment correlation length from
the Fourier transform G(p) = sum_t C(t) cos(p t) at p = 0 and p_1 = 2 pi / L_0:

    xi_2nd = sqrt(G(0) / G(p_1) - 1) / (2 sin(p_1 / 2)),

(G(0) = <M^2>/V = chi); for the free field xi_2nd = 1 / (2 sinh(m / 2)) exactly. Both assume
the symmetric phase; in the broken phase the disconnected part <M>^2 spoils them.
"""

import numpy as np

from lqcdflow.analysis.observables import Quantity, measured


def correlator(ensemble):
    """[(t, Quantity C(t), Quantity m_eff(t) or None)] for t = 0..L_0/2."""
    L0 = ensemble.shape[0]
    c = [Quantity(f"C({t})", f"C({t})",
                  measured(ensemble, lambda o, t=t: 0.5 * (o["correlator"][:, t]
                                                           + o["correlator"][:, -t % L0])))
         for t in range(L0 // 2 + 1)]
    rows = []
    for t in range(L0 // 2 + 1):
        m_eff = None
        if t >= 1 and c[t].obs.value != 0:
            ratio = (c[t - 1].obs + c[min(t + 1, L0 - t - 1)].obs) / (2 * c[t].obs)
            if ratio.value > 1:
                with np.errstate(invalid="ignore"):  # pyerrors also maps each replica's mean
                    m_eff = Quantity(f"m_eff({t})", f"m_eff({t})", np.arccosh(ratio))
        rows.append((t, c[t], m_eff))
    return rows


def second_moment_xi(ensemble):
    """Quantity xi_2nd, or None where G(0)/G(p_1) <= 1 (no decay, or L_0 = 1)."""
    L0 = ensemble.shape[0]
    p1 = 2 * np.pi / L0
    cosine = np.cos(p1 * np.arange(L0))
    g0 = measured(ensemble, lambda o: o["correlator"].sum(axis=1))
    g1 = measured(ensemble, lambda o: o["correlator"] @ cosine)
    if g1.value <= 0 or g0.value <= g1.value:
        return None
    return Quantity("xi_2nd", "xi_2nd", (g0 / g1 - 1) ** 0.5 / (2 * np.sin(p1 / 2)))
