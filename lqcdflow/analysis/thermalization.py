"""The thermalisation cut: from the run file, given, or detected automatically.

Detection (J. D. Chodera, J. Chem. Theory Comput. 12 (2016) 1799): discarding the first t_0
of N measurements leaves N_eff(t_0) = (N - t_0) / (2 tau_int(t_0)) effectively independent
samples, tau_int(t_0) being the Gamma-method tau_int of the remaining series. A transient
from a non-equilibrium start inflates the variance and tau_int of what follows it, so N_eff
peaks once the transient is discarded; the cut is the t_0 that maximises
min_A N_eff^A(t_0) over the action and |M|. Candidates t_0 are 0 and a geometric grid up to
N/2, so a short transient is resolved finely and a long chain is scanned quickly.
"""

import dataclasses

import numpy as np

from lqcdflow.analysis.gamma import mean

OBSERVABLES = ("action", "abs_m")
GRID_POINTS = 40
MIN_SAMPLES = 10  # shorter series are not scanned (cut 0)


def candidates(n):
    """Numbers of leading measurements to try discarding from a series of length n."""
    if n < 2 * MIN_SAMPLES:
        return np.zeros(1, dtype=np.int64)
    grid = np.geomspace(1, n // 2, GRID_POINTS).round().astype(np.int64)
    return np.unique(np.concatenate(([0], grid)))


def detect(replica, S=2.0):
    """The detected cut of a Replica: the last trajectory to drop (first measured - 1 if none)."""
    series = [replica.observables[name] for name in OBSERVABLES]
    tried = candidates(len(replica.trajectory))
    n_eff = [min(mean(s[t0:], S).n_effective for s in series) for t0 in tried]
    t0 = int(tried[int(np.argmax(n_eff))])
    return int(replica.trajectory[t0] - 1)


def choose(ensemble, setting, S=2.0):
    """The ensemble with the thermalisation cut ``setting`` applied to every replica.

    Parameters
    ----------
    ensemble : Ensemble
        As read (each replica cut as its run file says).
    setting : None, int or "auto"
        None keeps the run file's cut, an int drops trajectories <= setting, "auto" detects.
    """
    if setting is None:
        return ensemble
    if setting == "auto":
        replicas = [r.with_thermalization(detect(r, S), "detected") for r in ensemble.replicas]
    else:
        replicas = [r.with_thermalization(setting, "given") for r in ensemble.replicas]
    return dataclasses.replace(ensemble, replicas=replicas)
