"""Gaussian prior on a rank's sub-lattice, independent of the decomposition.

phi_x ~ N(0, 1) at every site of every sample, drawn with the counter-based generator
:class:`lqcdflow.rng.CounterRNG` at the global counter site

    c(b, x) = b V + i(x),   V = prod_mu L_mu,   i(x) = global lexicographic site index,

so sample b of draw n is a pure function of (seed, n, b, x): the same on any process grid and
for any batch size. The stream is :data:`STREAM_FLOW_PRIOR`.

log q(phi) = -1/2 sum_x phi_x^2 - (V/2) log(2 pi), summed over the global lattice.
"""

import math

import numpy as np
import torch

from lqcdflow.flows.torch_lattice import sample_sum
from lqcdflow.rng import CounterRNG

# Philox stream of the flow prior; lqcdflow.rng uses 1 (momenta), 2 (accept), 3 (hot start).
STREAM_FLOW_PRIOR = 16


class GaussianPrior:
    """Independent standard normal fields on the local block of ``lattice``.

    Parameters
    ----------
    lattice : lqcdflow.parallel.Lattice
    seed : int
        Philox key, in [0, 2^64).
    dtype : torch.dtype
        Of the samples (drawn in float64, then converted).
    device : torch.device or str
    stream : int
        Philox stream (default :data:`STREAM_FLOW_PRIOR`).
    """

    def __init__(self, lattice, seed, dtype=torch.float64, device="cpu",
                 stream=STREAM_FLOW_PRIOR):
        self.lattice = lattice
        self.rng = CounterRNG(seed)
        self.dtype, self.device, self.stream = dtype, torch.device(device), stream
        self._sites = lattice.backend.asnumpy(lattice.site_index)

    def sample(self, batch, draw, start=0):
        """Samples b = start, ..., start + batch - 1 of draw number ``draw``.

        Returns a tensor of shape (batch, *local_shape).
        """
        volume = self.lattice.volume
        if (start + batch) * volume >= 2**64:
            raise ValueError("sample index times volume exceeds the 64-bit site counter")
        b = np.arange(start, start + batch, dtype=np.uint64) * np.uint64(volume)
        sites = b.reshape((-1,) + (1,) * self.lattice.ndim) + self._sites
        z = self.rng.normal(sites, draw, self.stream)
        return torch.from_numpy(z).to(dtype=self.dtype, device=self.device)

    def log_prob(self, phi):
        """log q(phi) per sample, summed over the global lattice (float64, reproducible,
        differentiable)."""
        return (sample_sum(-0.5 * phi * phi, self.lattice)
                - 0.5 * self.lattice.volume * math.log(2 * math.pi))
