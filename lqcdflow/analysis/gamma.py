"""Gamma-method estimates (U. Wolff, Comput. Phys. Commun. 156 (2004) 143) via pyerrors.

For a series a_1..a_N with mean abar, the autocorrelation function
Gamma(t) = <(a_i - abar)(a_{i+t} - abar)>, tau_int = 1/2 + sum_{t=1}^{W} Gamma(t)/Gamma(0),
with the window W chosen automatically (parameter S), and the error of the mean
sigma^2 = 2 tau_int Gamma(0) / N. An i.i.d. series has tau_int = 1/2.
"""

from dataclasses import dataclass

import numpy as np
import pyerrors as pe

ENSEMBLE = "ensemble"


@dataclass(frozen=True)
class Estimate:
    """A mean (or derived value) with its error, tau_int and the error of tau_int."""

    value: float
    error: float
    tau_int: float
    tau_int_error: float
    n_samples: int

    @property
    def n_effective(self):
        """N / (2 tau_int): the number of independent samples the error corresponds to."""
        return self.n_samples / (2 * self.tau_int) if self.tau_int > 0 else float("nan")


def observable(series, name=ENSEMBLE):
    """A pyerrors Obs of the Monte Carlo series ``series`` (one replica named ``name``)."""
    series = np.asarray(series, dtype=np.float64)
    if series.ndim != 1 or series.size < 2:
        raise ValueError(f"a Monte Carlo series needs >= 2 samples, got shape {series.shape}")
    return pe.Obs([series], [name])


def estimate(obs, S=2.0):
    """Run the Gamma method on ``obs`` (a primary or derived Obs) and return an Estimate."""
    obs.gamma_method(S=S)
    name = obs.e_names[0]
    if obs.dvalue == 0.0:
        tau, dtau = 0.5, 0.0  # a constant series: no fluctuations to correlate
    else:
        tau, dtau = float(obs.e_tauint[name]), float(obs.e_dtauint[name])
    return Estimate(float(obs.value), float(obs.dvalue), tau, dtau, int(obs.N))


def mean(series, S=2.0):
    """Estimate of the mean of one Monte Carlo series."""
    return estimate(observable(series), S)
