"""Langevin dynamics (stochastic quantization): the field's Brownian motion in a fictitious
time whose equilibrium distribution is exp(-S) (Parisi and Wu, Sci. Sin. 24 (1981) 483).

The Euler-Maruyama step with time step eps,

    phi' = phi - eps dS/dphi + sqrt(2 eps) eta,   eta ~ N(0, 1) per degree of freedom,

is one leapfrog step of HMC with step size h = sqrt(2 eps) from momenta eta: the first half
kick and the drift give exactly phi + h eta - (h^2/2) F = phi'. Unadjusted (``metropolis =
false``) every step is taken and the chain samples exp(-S) only up to an O(eps) bias (for a
Gaussian action S = phi A phi / 2 the stationary covariance is A^-1 (1 - eps A / 2)^-1). With
the Metropolis test of HMC on Delta H (the last half kick makes it the acceptance of the
Metropolis-adjusted Langevin algorithm, MALA; Roberts and Tweedie, Bernoulli 2 (1996) 341)
the chain is exact. On group manifolds the drift step is the group's exponential map (the
theory's ``update_field``), as in HMC. Counter-based random numbers make the chain bitwise the
same on any rank count, as for HMC.
"""

import dataclasses
import math

from lqcdflow.mc.hmc import HMC
from lqcdflow.mc.integrators import leapfrog


def langevin(theory, epsilon, rng, metropolis=True, kernels=None):
    """The Langevin update of Langevin time step ``epsilon``, as an :class:`HMC`: one leapfrog
    step of length sqrt(2 epsilon), with (MALA) or without the Metropolis test; ``kernels``
    as for HMC."""
    name = "Langevin (MALA)" if metropolis else "Langevin (unadjusted)"
    hmc = HMC.of(theory, leapfrog(), 1, math.sqrt(2.0 * epsilon), rng, kernels)
    return dataclasses.replace(hmc, metropolis=metropolis, name=name)
