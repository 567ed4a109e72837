"""Primary and derived observables of an ensemble, as pyerrors Obs.

Every theory declares what its measured series mean (its module's ``quantities``, see
:mod:`lqcdflow.theories`); here they are turned into Obs of the replicas' series. Common to all
theories are, from the Monte Carlo record where it was kept, the acceptance and
<exp(-Delta H)> (= 1 for an exact algorithm).
"""

from collections import namedtuple

import numpy as np

from lqcdflow import theories
from lqcdflow.analysis.gamma import MIN_SAMPLES, observable

Quantity = namedtuple("Quantity", "name label obs")


def measured(ensemble, f):
    """Obs of the per-measurement series f(observables) of every replica."""
    return observable([f(r.observables) for r in ensemble.replicas],
                      [r.trajectory for r in ensemble.replicas])


def recorded(ensemble, f):
    """Obs of the per-trajectory series f(mc) of every replica."""
    return observable([f(r.mc) for r in ensemble.replicas],
                      [r.mc_trajectory for r in ensemble.replicas])


def theory_module(ensemble):
    """The module of the ensemble's theory (files of before U(1) record phi^4)."""
    return theories.module(ensemble.theory.get("name", theories.DEFAULT))


def quantities(ensemble):
    """(primary {name: Quantity}, derived [Quantity], notes) of the ensemble.

    The theory's primary quantities, then the acceptance (of trajectories, or of the site
    updates of local sweeps) and <exp(-dH)> when every replica recorded at least MIN_SAMPLES
    trajectories; the theory's derived quantities and notes.
    """
    primary, derived, notes = theory_module(ensemble).quantities(
        ensemble.theory, ensemble.shape, lambda f: measured(ensemble, f), ensemble.has)
    primary = [Quantity(*q) for q in primary]
    if all(len(r.mc_trajectory) >= MIN_SAMPLES for r in ensemble.replicas):
        for series in ("accepted", "acceptance"):  # HMC and flows; local sweeps
            if ensemble.has(series):
                primary.append(Quantity("acceptance", "acceptance",
                                        recorded(ensemble, lambda mc, s=series: mc[s])))
        if ensemble.has("delta_H"):
            primary.append(Quantity("exp_minus_delta_H", "<exp(-dH)>",
                                    recorded(ensemble, lambda mc: np.exp(-mc["delta_H"]))))
    return {q.name: q for q in primary}, [Quantity(*q) for q in derived], notes
