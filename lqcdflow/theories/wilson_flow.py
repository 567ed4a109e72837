"""The Wilson (gradient) flow of SU(N) gauge fields and the scales t0 and w0 it defines.

The flow (Luscher, arXiv:1006.4518) evolves the links in the flow time t by

    dV_mu(x)/dt = -g_0^2 [d_{x,mu} S_W(V)] V_mu(x),   V_mu(x)|_{t=0} = U_mu(x),

steepest descent of the Wilson action; in the su(N) coordinates of lqcdflow.theories.sun
(V -> exp(i w T_a) V) the generator is Z_{mu,a}(x) = -2 G_{mu,a}(x), G the staple derivative
Im tr(T_a V_mu(x) A_mu(x)), independent of beta. Integrated by Luscher's third-order
Runge-Kutta scheme (his appendix C), with Z_i = eps Z(W_i):

    W_1 = exp(Z_0/4) W_0,   W_2 = exp(8/9 Z_1 - 17/36 Z_0) W_1,
    V(t + eps) = exp(3/4 Z_2 - 8/9 Z_1 + 17/36 Z_0) W_2,      global error O(eps^3).

Energy density (the mean over sites; F_{mu nu} = F^a T^a Hermitian):
    E_plaquette = 2 sum_{mu<nu} Re tr(1 - U_{mu nu}(x)) = N D(D-1) (1 - <plaquette>),
    E_clover    = sum_{mu<nu} tr F_{mu nu}(x)^2, F_{mu nu} the traceless part of
                  (Q_{mu nu} - Q_{mu nu}^dagger)/(8i), Q the sum of the four plaquettes
                  (leaves) around x in the plane, all oriented mu then nu;
both tend to (1/4) F^a_{mu nu} F^a_{mu nu} a^4 in the continuum. In 4D the clover charge

    Q = (1/(4 pi^2)) sum_x [tr(F_01 F_23) - tr(F_02 F_13) + tr(F_03 F_12)]

(= (1/32 pi^2) eps_{mu nu rho sigma} tr F_{mu nu} F_{rho sigma}) approaches integers as the
flow smooths the field. Scales: t0 by t^2 <E(t)> = 0.3 (Luscher) and w0 by
W(t) = t d/dt [t^2 <E(t)>] = 0.3, w0 = sqrt(t) (BMW, arXiv:1203.4469); both from the
measured points by interpolation.
"""

import math
from dataclasses import dataclass

from lqcdflow.groups.matrices import join, mul, re_trace, re_trace_mul_adjoint

REFERENCE = 0.3  # t^2 E(t0) = W(w0^2) = 0.3

# Luscher's RK3: stage i applies exp(sum_j c_ij Z_j), Z_j = eps Z(W_j)
RK3_STAGES = ((1.0 / 4.0,), (-17.0 / 36.0, 8.0 / 9.0), (17.0 / 36.0, -8.0 / 9.0, 3.0 / 4.0))


@dataclass(frozen=True)
class FlowPoint:
    """Measurements at flow time t."""

    t: float
    e_plaquette: float
    e_clover: float
    charge: float  # the clover Q in 4D, NaN otherwise


def flow_step(theory, field, eps):
    """One RK3 step of size ``eps`` of the Wilson flow: a new field (``field`` unchanged)."""
    xp, group = theory.lattice.xp, theory.group
    w = field.copy()
    generators = []
    for coefficients in RK3_STAGES:
        generators.append(theory.staple_derivative(w) * (-2.0 * eps))
        z = None
        for c, g in zip(coefficients, generators):
            z = c * g if z is None else z + c * g
        w = mul(group.exp_i(group.algebra_matrix(z, xp), xp), w, xp)
    return w


def energy_density_plaquette(theory, field):
    """E = 2 sum_{mu<nu} Re tr(1 - U_{mu nu}), averaged over the lattice."""
    return 2.0 * len(theory.planes) * (theory.n - theory.mean_re_trace(field))


def clover_fields(theory, field):
    """{(mu, nu): F_{mu nu}(x)} for mu < nu, the clover field strength (module docstring)."""
    lat, xp, n = theory.lattice, theory.lattice.xp, theory.n
    links = theory.links(field)

    def transported(leaf, mu):
        """The leaf based at x + mu moved to x along U_mu: shift_{-mu}(U_mu^+ L U_mu)."""
        return lat.shift(mul(mul(links[mu], leaf, xp, adjoint_a=True), links[mu], xp), mu, -1)

    strengths = {}
    for (mu, nu), plaquette in theory.plaquettes(field).items():
        upper_left = transported(plaquette, mu)
        clover = plaquette + upper_left + transported(plaquette, nu) \
            + transported(upper_left, nu)
        anti = clover - clover.conj().swapaxes(-1, -2)  # 2i Im part: F = anti / (8i)
        re, im = anti.imag / 8.0, -anti.real / 8.0
        tr_re = re_trace(re)
        for i in range(n):
            re[..., i, i] -= tr_re / n
        strengths[(mu, nu)] = join(re, im, xp)
    return strengths


def energy_density_clover(theory, field, strengths=None):
    """E = sum_{mu<nu} tr F_{mu nu}^2 from the clover, averaged over the lattice."""
    lat = theory.lattice
    strengths = clover_fields(theory, field) if strengths is None else strengths
    return sum(lat.sum(re_trace_mul_adjoint(f, f)) for f in strengths.values()) / lat.volume


def clover_charge(theory, field, strengths=None):
    """Q = (1/4 pi^2) sum_x [tr F_01 F_23 - tr F_02 F_13 + tr F_03 F_12] (4D only)."""
    lat = theory.lattice
    if lat.ndim != 4:
        raise ValueError(f"the clover charge is defined in 4D, not {lat.ndim}D")
    f = clover_fields(theory, field) if strengths is None else strengths
    # tr(A B) = tr(A B^dagger) for Hermitian B
    density = re_trace_mul_adjoint(f[(0, 1)], f[(2, 3)])
    density -= re_trace_mul_adjoint(f[(0, 2)], f[(1, 3)])
    density += re_trace_mul_adjoint(f[(0, 3)], f[(1, 2)])
    return lat.sum(density) / (4.0 * math.pi ** 2)


def measure(theory, field, t):
    """The FlowPoint of ``field`` at flow time ``t``."""
    strengths = clover_fields(theory, field)
    charge = clover_charge(theory, field, strengths) if theory.lattice.ndim == 4 else math.nan
    return FlowPoint(t, energy_density_plaquette(theory, field),
                     energy_density_clover(theory, field, strengths), charge)


def wilson_flow(theory, field, eps, n_steps, measure_every=1):
    """Flow ``field`` by ``n_steps`` RK3 steps of size ``eps``; returns [FlowPoint at t = 0,
    and after every ``measure_every`` steps]. The input field is not changed."""
    points = [measure(theory, field, 0.0)]
    for step in range(1, n_steps + 1):
        field = flow_step(theory, field, eps)
        if step % measure_every == 0:
            points.append(measure(theory, field, step * eps))
    return points


def scale_t0(t, e, reference=REFERENCE):
    """t0: where t^2 E(t) first crosses ``reference``, linearly interpolated between the
    measured points around the crossing; None if it is not crossed. ``e`` may hold floats or
    pyerrors Obs (then t0 is an Obs with the propagated error)."""
    return _crossing(t, [ti * ti * ei for ti, ei in zip(t, e)], reference)


def scale_w0(t, e, reference=REFERENCE):
    """w0 = sqrt(t) where W(t) = t d/dt[t^2 E(t)] first crosses ``reference`` (the derivative
    by central differences of the measured points); None if it is not crossed. Floats or
    pyerrors Obs, as for :func:`scale_t0`."""
    y = [ti * ti * ei for ti, ei in zip(t, e)]
    w = [t[k] * (y[k + 1] - y[k - 1]) / (t[k + 1] - t[k - 1]) for k in range(1, len(t) - 1)]
    crossing = _crossing(t[1:-1], w, reference)
    return None if crossing is None else crossing ** 0.5


def _crossing(x, y, level):
    """x where y first rises through ``level`` (the first y_k >= level, k >= 1, with
    y_{k-1} < level), linearly interpolated; None if there is no such k."""
    value = [float(getattr(v, "value", v)) for v in y]
    for k in range(1, len(y)):
        if value[k - 1] < level <= value[k]:
            return x[k - 1] + (level - y[k - 1]) * (x[k] - x[k - 1]) / (y[k] - y[k - 1])
    return None
