"""Primary and derived observables of an ensemble, as pyerrors Obs.

M = sum_x phi_x is the total magnetisation, V the lattice volume, <.> the ensemble mean.

Primary (means of measured series): <S>/V, <M>/V, <|M|>/V, <M^2>/V^2, <M^4>/V^4 and, from the
Monte Carlo record where it was kept, the acceptance and <exp(-Delta H)> (= 1 for an exact
algorithm).

Derived (errors propagated linearly by pyerrors):

    chi   = <M^2> / V                                 susceptibility
    chi_c = (<M^2> - <|M|>^2) / V                     connected susceptibility
    U     = <M^4> / <M^2>^2                           Binder ratio (3 for Gaussian M)

and, in the hopping form, where W = 2 sum_{x,mu} phi_x phi_{x+mu} = -dS/d kappa, the kappa
derivatives d<A>/d kappa = <W A> - <W><A> (A independent of kappa):

    d chi / d kappa       = (<W M^2> - <W><M^2>) / V
    d(<|M|>/V) / d kappa  = (<W |M|> - <W><|M|>) / V
    dU / d kappa          = (D_4 <M^2> - 2 <M^4> D_2) / <M^2>^3,  D_k = <W M^k> - <W><M^k>.
"""

from collections import namedtuple

import numpy as np

from lqcdflow.analysis.gamma import MIN_SAMPLES, observable

Quantity = namedtuple("Quantity", "name label obs")

# name, label, measured series, power of V it is divided by
MOMENTS = (
    ("action_density", "<S>/V", "action", 1),
    ("m", "<M>/V", "m", 1),
    ("abs_m", "<|M|>/V", "abs_m", 1),
    ("m2", "<M^2>/V^2", "m2", 2),
    ("m4", "<M^4>/V^4", "m4", 4),
)


def measured(ensemble, f):
    """Obs of the per-measurement series f(observables) of every replica."""
    return observable([f(r.observables) for r in ensemble.replicas],
                      [r.trajectory for r in ensemble.replicas])


def recorded(ensemble, f):
    """Obs of the per-trajectory series f(mc) of every replica."""
    return observable([f(r.mc) for r in ensemble.replicas],
                      [r.mc_trajectory for r in ensemble.replicas])


def primary(ensemble):
    """{name: Quantity} of the primary observables the ensemble has series for."""
    V = ensemble.volume
    quantities = [Quantity(name, label, measured(ensemble, lambda o, s=series, k=k: o[s] / V**k))
                  for name, label, series, k in MOMENTS]
    if all(len(r.mc_trajectory) >= MIN_SAMPLES for r in ensemble.replicas):
        if ensemble.has("accepted"):
            quantities.append(Quantity("acceptance", "acceptance",
                                       recorded(ensemble, lambda mc: mc["accepted"])))
        if ensemble.has("delta_H"):
            quantities.append(Quantity("exp_minus_delta_H", "<exp(-dH)>",
                                       recorded(ensemble, lambda mc: np.exp(-mc["delta_H"]))))
    return {q.name: q for q in quantities}


def _kappa_derivatives(ensemble, p):
    V = ensemble.volume
    w = measured(ensemble, lambda o: o["W"])

    def d(name, series, k):  # <W A> - <W><A> for A = series / V^k
        return measured(ensemble, lambda o: o["W"] * o[series] / V**k) - w * p[name].obs

    m2, m4 = p["m2"].obs, p["m4"].obs
    d2, d4 = d("m2", "m2", 2), d("m4", "m4", 4)
    return [Quantity("dchi_dkappa", "d chi/d kappa", V * d2),
            Quantity("dabs_m_dkappa", "d(<|M|>/V)/d kappa", d("abs_m", "abs_m", 1)),
            Quantity("dbinder_dkappa", "dU/d kappa", (d4 * m2 - 2 * m4 * d2) / m2**3)]


def derived(ensemble, p):
    """(list of derived Quantity, notes on what was left out) from the primary ``p``."""
    V = ensemble.volume
    m2, m4, abs_m = p["m2"].obs, p["m4"].obs, p["abs_m"].obs
    quantities = [Quantity("chi", "chi = <M^2>/V", V * m2),
                  Quantity("chi_connected", "chi_c = (<M^2>-<|M|>^2)/V", V * (m2 - abs_m**2)),
                  Quantity("binder_ratio", "U = <M^4>/<M^2>^2", m4 / m2**2)]
    notes = []
    if ensemble.theory.get("form") != "hopping":
        notes.append("d/d kappa not computed: the theory is not in the hopping form")
    elif not ensemble.has("W"):
        notes.append("d/d kappa not computed: no series W")
    else:
        quantities += _kappa_derivatives(ensemble, p)
    return quantities, notes
