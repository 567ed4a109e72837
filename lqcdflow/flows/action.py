"""phi^4 action (standard form) in torch on a rank's sub-lattice, for training losses.

S[phi] = sum_x [ sum_mu (phi_{x+mu} - phi_x)^2 + m^2 phi_x^2 + lambda phi_x^4 ]

per sample, summed over the global lattice (differentiable; phi_{x+mu} from :func:`halo_pad`).
"""

from lqcdflow.flows.halo import halo_pad, shifted
from lqcdflow.flows.reduce import allreduce_sum


def phi4_action(phi, lattice, m2, lam):
    """S[phi] of the standard form for fields of shape (batch, *local_shape); returns (batch,)."""
    ndim = lattice.ndim
    padded = halo_pad(phi, lattice, 1)
    density = (m2 + lam * phi * phi) * phi * phi
    for mu in range(ndim):
        up = [int(nu == mu) for nu in range(ndim)]
        diff = shifted(padded, lattice.local_shape, 1, up) - phi
        density = density + diff * diff
    return allreduce_sum(density.flatten(1).sum(dim=1), lattice.comm)
