"""phi^4 action (standard form) in torch on a rank's sub-lattice, for training losses.

S[phi] = sum_x [ sum_mu (phi_{x+mu} - phi_x)^2 + m^2 phi_x^2 + lambda phi_x^4 ]

per sample, summed over the global lattice (differentiable; phi_{x+mu} from :func:`halo_pad`).
"""

from lqcdflow.flows.halo import halo_pad
from lqcdflow.flows.reduce import allreduce_sum


def phi4_action(phi, lattice, m2, lam):
    """S[phi] of the standard form for fields of shape (batch, *local_shape); returns (batch,)."""
    ndim = lattice.ndim
    padded = halo_pad(phi, lattice, 1)
    inner = [slice(1, -1)] * ndim
    density = (m2 + lam * phi * phi) * phi * phi
    for mu in range(ndim):
        up = list(inner)
        up[mu] = slice(2, None)
        diff = padded[(Ellipsis, *up)] - phi
        density = density + diff * diff
    return allreduce_sum(density.flatten(1).sum(dim=1), lattice.comm)
