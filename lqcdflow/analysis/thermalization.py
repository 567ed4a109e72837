"""The thermalisation cut: from the run file, given, or detected automatically.

Detection is the marginal standard error rule (K. P. White, Simulation 69 (1997) 323) with
the Gamma-method error: discarding the first d of N measurements leaves a mean with error
sigma_A(d), sigma_A^2(d) = 2 tau_int(d) Gamma_d(0) / (N - d), computed from the remaining
series. A transient from a non-equilibrium start inflates Gamma_d(0) (and tau_int) while it
is kept, and once it is gone sigma_A(d) only grows like 1/sqrt(N - d); the cut is the d that
minimises prod_A sigma_A(d) over the series the theory names (its module's THERMALIZATION:
phi^4 the action and |M|, U(1) the action and the plaquette). Candidates d are 0 and a geometric grid
up to N/2, so a short transient is resolved finely and a long chain is scanned quickly; a
chain of more than MAX_BLOCKS measurements is scanned as the means of consecutive blocks of
measurements (which have the same mean and error of the mean), d in steps of a block.
"""

import dataclasses

import numpy as np

from lqcdflow.analysis.gamma import mean
from lqcdflow.analysis.observables import theory_module
GRID_POINTS = 40
MIN_SAMPLES = 10  # shorter series are not scanned (cut 0)
MAX_BLOCKS = 10000


def candidates(n):
    """Numbers of leading measurements to try discarding from a series of length n."""
    if n < 2 * MIN_SAMPLES:
        return np.zeros(1, dtype=np.int64)
    grid = np.geomspace(1, n // 2, GRID_POINTS).round().astype(np.int64)
    return np.unique(np.concatenate(([0], grid)))


def detect(replica, names, S=2.0):
    """The detected cut of a Replica from its series ``names``: the last trajectory to drop
    (first measured - 1 if none)."""
    n = len(replica.trajectory)
    block = -(-n // MAX_BLOCKS)
    series = [block_means(replica.observables[name], block) for name in names]
    tried = candidates(len(series[0]))
    errors = np.array([[mean(s[d:], S).error for s in series] for d in tried])
    with np.errstate(divide="ignore"):  # a constant series has error 0
        log_error = np.log(errors).sum(axis=1)
    d = int(tried[int(np.argmin(log_error))]) * block
    return int(replica.trajectory[d] - 1)


def block_means(series, block):
    """Means of consecutive blocks of ``block`` values (an incomplete last block left out)."""
    n = len(series) // block * block
    return series[:n].reshape(-1, block).mean(axis=1)


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
        names = theory_module(ensemble).THERMALIZATION
        replicas = [r.with_thermalization(detect(r, names, S), "detected")
                    for r in ensemble.replicas]
    else:
        replicas = [r.with_thermalization(setting, "given") for r in ensemble.replicas]
    return dataclasses.replace(ensemble, replicas=replicas)
