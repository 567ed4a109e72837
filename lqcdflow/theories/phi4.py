"""Real scalar phi^4 theory on a periodic D-dimensional lattice.

Both conventions in use are the same quartic polynomial,

    S[phi] = sum_x [ -h sum_mu phi_x phi_{x+mu} + c2 phi_x^2 + c4 phi_x^4 + c0 ],

with coefficients

    hopping form  (kappa, lambda):  h = 2 kappa, c2 = 1 - 2 lambda, c4 = lambda, c0 = lambda,
        i.e. S = sum_x [ -2 kappa sum_mu phi_x phi_{x+mu} + phi_x^2 + lambda (phi_x^2 - 1)^2 ];
    standard form (m^2, lambda):    h = 2, c2 = 2D + m^2, c4 = lambda, c0 = 0,
        i.e. S = sum_x [ sum_mu (phi_{x+mu} - phi_x)^2 + m^2 phi_x^2 + lambda phi_x^4 ].

Map between them: phi_std = sqrt(kappa) phi_hop with
    kappa = [sqrt((2D + m^2)^2 + 8 lambda_std) - (2D + m^2)] / (4 lambda_std)
          (= 1 / (2D + m^2) at lambda_std = 0),
    lambda_hop = lambda_std kappa^2,
and then S_hop[phi_hop] = S_std[phi_std] + lambda_hop V.
"""

import math
from dataclasses import dataclass

import numpy as np


def standard_to_hopping(m2, lam, ndim):
    """(kappa, lambda_hop) of the hopping form equal to the standard form (m^2, lambda).

    >>> standard_to_hopping(-4.0, 8.0, 2)
    (0.25, 0.5)
    """
    a = 2 * ndim + m2
    if lam == 0:
        if a <= 0:
            raise ValueError(f"free field needs 2D + m^2 > 0, got {a}")
        kappa = 1.0 / a
    elif lam > 0:
        kappa = (math.sqrt(a * a + 8 * lam) - a) / (4 * lam)
    else:
        raise ValueError(f"lambda must be >= 0, got {lam}")
    return kappa, lam * kappa**2


def hopping_to_standard(kappa, lam, ndim):
    """(m^2, lambda_std) of the standard form equal to the hopping form (kappa, lambda).

    m^2 = (1 - 2 lambda) / kappa - 2D,  lambda_std = lambda / kappa^2.
    """
    if kappa <= 0:
        raise ValueError(f"the map to the standard form needs kappa > 0, got {kappa}")
    return (1 - 2 * lam) / kappa - 2 * ndim, lam / kappa**2


@dataclass(frozen=True)
class Phi4Couplings:
    """Coefficients (h, c2, c4, c0) of the quartic lattice action, see the module docstring."""

    h: float
    c2: float
    c4: float
    c0: float

    @classmethod
    def hopping(cls, kappa, lam):
        return cls(2.0 * kappa, 1.0 - 2.0 * lam, lam, lam)

    @classmethod
    def standard(cls, m2, lam, ndim):
        return cls(2.0, 2.0 * ndim + m2, lam, 0.0)


class Phi4Action:
    """phi^4 action, force and observables on a domain-decomposed lattice.

    Parameters
    ----------
    lattice : lqcdflow.parallel.Lattice
    couplings : Phi4Couplings
    """

    def __init__(self, lattice, couplings: Phi4Couplings):
        self.lattice = lattice
        self.couplings = couplings
        self._scratch = {}  # dtype -> one slab of the lattice, for force

    def link_sum(self, phi):
        """l_x = sum_mu phi_x phi_{x+mu} (one forward neighbour per direction)."""
        lat = self.lattice
        out = lat.xp.zeros_like(phi)
        for mu in range(lat.ndim):
            out += phi * lat.shift(phi, mu, +1)
        return out

    def density(self, phi, links=None):
        """Action density s_x = -h l_x + c2 phi_x^2 + c4 phi_x^4 + c0, with S = sum_x s_x."""
        c = self.couplings
        links = self.link_sum(phi) if links is None else links
        phi2 = phi * phi
        return ((c.c4 * phi2 + c.c2) * phi2 + c.c0) - c.h * links

    def action(self, phi):
        """S[phi], summed reproducibly (identical on every rank and decomposition)."""
        return self.lattice.sum(self.density(phi))

    def force(self, phi, out=None):
        """dS/dphi_x = -h sum_mu (phi_{x+mu} + phi_{x-mu}) + (4 c4 phi_x^2 + 2 c2) phi_x.

        ``out`` (optional) receives the result, avoiding an allocation per call.

        The polynomial is evaluated slab by slab (``on_slab`` of
        :meth:`Lattice.neighbour_sum <lqcdflow.parallel.Lattice.neighbour_sum>`) right after
        the neighbour sum of the slab, while that and phi's slab are still in cache, through a
        slab-sized scratch array instead of a field-sized temporary: its six array operations
        then cost L2 rather than L3 or memory bandwidth. The operations and their order are
        those of a whole-field evaluation, so the result does not depend on the slab size.
        """
        c, xp = self.couplings, self.lattice.xp
        out = xp.empty_like(phi) if out is None else out
        if phi.dtype not in self._scratch:
            self._scratch[phi.dtype] = self.lattice.empty_slab(phi.dtype)
        scratch = self._scratch[phi.dtype]

        def finish(rows):
            f, p = out[rows], phi[rows]
            cubic = xp.multiply(p, p, out=scratch[:p.size].reshape(p.shape))
            cubic *= 4.0 * c.c4
            cubic += 2.0 * c.c2
            cubic *= p
            f *= -c.h
            f += cubic

        return self.lattice.neighbour_sum(phi, out=out, on_slab=finish)

    def observables(self, phi):
        """Per-configuration observables, identical on all ranks.

        Returns
        -------
        dict with float entries ``action`` (S), ``m`` (M = sum_x phi_x), ``abs_m`` (|M|), ``m2``
        (M^2), ``m4`` (M^4), ``W`` (2 sum_{x,mu} phi_x phi_{x+mu}, so that
        d<A>/d kappa = <W A> - <W><A> in the hopping form), and ``correlator``: the
        zero-momentum time-slice correlator C(t) = (1/V) sum_{t0} S(t0) S(t0 + t) with
        S(t) = sum_{x: x_0 = t} phi_x (a NumPy array of length L_0).
        """
        lat = self.lattice
        links = self.link_sum(phi)
        action = lat.sum(self.density(phi, links))
        w = 2.0 * lat.sum(links)
        slices = lat.timeslice_sum(phi)
        m = math.fsum(slices)
        corr = np.array([np.dot(slices, np.roll(slices, -t)) for t in range(lat.shape[0])])
        return {"action": action, "m": m, "abs_m": abs(m), "m2": m * m, "m4": m**4, "W": w,
                "correlator": corr / lat.volume}

