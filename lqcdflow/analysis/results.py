"""The analysis of an ensemble: Gamma-method estimates of every observable, and warnings."""

from dataclasses import dataclass

import numpy as np

from lqcdflow.analysis import correlator, observables
from lqcdflow.analysis.gamma import Estimate, estimate

RELIABLE_TAUS = 100  # reliable errors need N >~ 100 tau_int samples (Wolff 2004, sec. 3.3)


@dataclass(frozen=True)
class Result:
    """One analysed quantity: JSON name, table label, "primary"/"derived", Obs and Estimate."""

    name: str
    label: str
    kind: str
    obs: object
    estimate: Estimate


@dataclass(frozen=True)
class CorrelatorPoint:
    """C(t) and m_eff(t) (None where undefined) at time separation t."""

    t: int
    C: Result
    m_eff: object


@dataclass(frozen=True)
class Results:
    """Primary and derived rows, the correlator (empty without one) and notes for the user."""

    rows: list
    correlator: list
    notes: list

    def __getitem__(self, name):
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def __contains__(self, name):
        return any(row.name == name for row in self.rows)


def _result(quantity, kind, S):
    return Result(quantity.name, quantity.label, kind, quantity.obs, estimate(quantity.obs, S))


def _reliability(rows):
    """A note naming the rows with fewer than RELIABLE_TAUS tau_int samples, if any."""
    short = [r for r in rows if r.estimate.n_samples < RELIABLE_TAUS * r.estimate.tau_int]
    if not short:
        return []
    worst = max(short, key=lambda r: r.estimate.tau_int / r.estimate.n_samples)
    e = worst.estimate
    return [f"warning: errors unreliable for {', '.join(r.label for r in short)}: "
            f"{worst.label} has tau_int = {e.tau_int:.3g} +- {e.tau_int_error:.2g} with "
            f"N = {e.n_samples}; reliable errors need N >~ {RELIABLE_TAUS} tau_int = "
            f"{RELIABLE_TAUS * e.tau_int:.0f}"]


def analyze(ensemble, S=2.0):
    """Results of ``ensemble`` after its thermalisation cuts (Gamma-method parameter S)."""
    ensemble = ensemble.after_thermalization()
    # a ratio of zero-variance means (a chain that never moved) is NaN in the table, and its
    # notes say why, instead of NumPy's warnings from inside pyerrors
    with np.errstate(divide="ignore", invalid="ignore"):
        primary, derived, notes = observables.quantities(ensemble)
        rows = [_result(q, "primary", S) for q in primary.values()]
        rows += [_result(q, "derived", S) for q in derived]
    points = []
    if ensemble.has("correlator"):
        xi = correlator.second_moment_xi(ensemble)
        if xi is None:
            notes.append("xi_2nd not computed: G(0) <= G(p_1), no decay in the correlator")
        else:
            rows.append(_result(xi, "derived", S))
        points = [CorrelatorPoint(t, _result(c, "correlator", S),
                                  None if m_eff is None else _result(m_eff, "correlator", S))
                  for t, c, m_eff in correlator.correlator(ensemble)]
    elif observables.theory_module(ensemble).CORRELATOR:
        notes.append("correlator, m_eff and xi_2nd not computed: no series correlator")
    return Results(rows, points, _stuck(ensemble) + _reliability(rows) + notes)


def _stuck(ensemble):
    """Warnings for replicas that never accepted a trajectory or whose measurements never
    changed: their results are those of one configuration, whatever the errors say."""
    notes = []
    for r in ensemble.replicas:
        if "accepted" in r.mc and len(r.mc["accepted"]) and not r.mc["accepted"].any():
            notes.append(f"warning: replica {r.name} accepted none of its "
                         f"{len(r.mc['accepted'])} trajectories after thermalisation: its "
                         "results are one configuration's (step size too large?)")
        elif all(np.all(v == v[:1]) for v in r.observables.values()):
            notes.append(f"warning: replica {r.name} never moved: every measured series is "
                         "constant after thermalisation")
    return notes
