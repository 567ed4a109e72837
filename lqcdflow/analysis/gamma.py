"""Gamma-method estimates (U. Wolff, Comput. Phys. Commun. 156 (2004) 143) via pyerrors.

For a series a_1..a_N with mean abar, the autocorrelation function is
Gamma(t) = <(a_i - abar)(a_{i+t} - abar)>, its normalised form rho(t) = Gamma(t)/Gamma(0), and
tau_int(W) = 1/2 + sum_{t=1}^{W} rho(t). The window W is the first W where
g(W) = exp(-W/tau(W)) - tau(W)/sqrt(W N) < 0 with tau(W) = S / ln((2 tau_int(W) + 1) /
(2 tau_int(W) - 1)) (parameter S, default 2), tau_int = tau_int(W) is bias corrected, its error
is delta tau_int = 2 tau_int sqrt((W + 1/2 - tau_int) / N), and the error of the mean is
sigma^2 = 2 tau_int Gamma(0) / N. An i.i.d. series has tau_int = 1/2, an AR(1) series with
coefficient rho has tau_int = (1 + rho) / (2 (1 - rho)).

Several replicas (independent Markov chains of the same ensemble) enter one Obs; their Gamma
functions are summed and tau_int is that of the whole ensemble. Derived observables
f(<a>, <b>, ...) carry the linearised fluctuations sum_k (df/d<a_k>) delta a_k, on which the
same analysis runs. tau_int and W are in units of the spacing of the samples (the
measurement interval).
"""

from dataclasses import dataclass

import numpy as np
import pyerrors as pe

ENSEMBLE = "ensemble"
MIN_SAMPLES = 5  # per replica, the least pyerrors takes


@dataclass(frozen=True)
class Estimate:
    """A mean (or derived value) with its error, tau_int, the error of tau_int and the window."""

    value: float
    error: float
    tau_int: float
    tau_int_error: float
    n_samples: int
    window: int

    @property
    def n_effective(self):
        """N / (2 tau_int): the number of independent samples the error corresponds to."""
        return self.n_samples / (2 * self.tau_int) if self.tau_int > 0 else float("nan")


@dataclass(frozen=True)
class Autocorrelation:
    """rho(t) and tau_int(W) with its error for t, W = 0, 1, ..., and the chosen window."""

    rho: np.ndarray
    tau_int: np.ndarray
    tau_int_error: np.ndarray
    window: int


def observable(replicas, idl=None):
    """A pyerrors Obs of the Monte Carlo series of one ensemble.

    Parameters
    ----------
    replicas : sequence of 1-D arrays
        One series per replica (independent Markov chain), each of at least MIN_SAMPLES.
    idl : sequence of increasing integer arrays, optional
        The trajectory numbers of the samples of each replica (gaps allowed); 1, 2, ... if
        not given.
    """
    replicas = [np.asarray(r, dtype=np.float64) for r in replicas]
    names = [f"{ENSEMBLE}|r{i}" for i in range(len(replicas))] if len(replicas) > 1 else [ENSEMBLE]
    if idl is not None:
        idl = [np.asarray(i, dtype=np.int64).tolist() for i in idl]
    return pe.Obs(replicas, names, idl=idl)


def estimate(obs, S=2.0):
    """Run the Gamma method on ``obs`` (a primary or derived Obs) and return an Estimate."""
    obs.gamma_method(S=S)
    name = obs.e_names[0]
    if obs.dvalue == 0.0:
        tau, dtau = 0.5, 0.0  # a constant series: no fluctuations to correlate
    else:
        tau, dtau = float(obs.e_tauint[name]), float(obs.e_dtauint[name])
    return Estimate(float(obs.value), float(obs.dvalue), tau, dtau, int(obs.N),
                    int(obs.e_windowsize[name]))


def mean(series, S=2.0):
    """Estimate of the mean of one Monte Carlo series."""
    return estimate(observable([series]), S)


def autocorrelation(obs):
    """The Autocorrelation of ``obs`` after :func:`estimate`, or None for a constant series."""
    name = obs.e_names[0]
    if name not in obs.e_n_tauint:
        return None
    return Autocorrelation(obs.e_rho[name], obs.e_n_tauint[name], obs.e_n_dtauint[name],
                           int(obs.e_windowsize[name]))
