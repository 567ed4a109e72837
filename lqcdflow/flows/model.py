"""A normalizing flow: a prior followed by invertible layers, on a rank's sub-lattice."""

from torch import nn


class PriorPushForward(nn.Module):
    """A model phi = f(z), z ~ prior, whose ``forward(z, log r(z))`` returns (phi, log q(phi));
    ``self.prior`` supplies ``sample(batch, draw, start)`` and ``log_prob``."""

    def sample(self, batch, draw, start=0):
        """Samples b = start .. start + batch - 1 of draw ``draw`` and their log-densities.

        Returns (phi, logq): phi of shape (batch, *local_shape), logq of shape (batch,), the
        same on every rank. Collective over the lattice communicator.
        """
        z = self.prior.sample(batch, draw, start)
        return self.forward(z, self.prior.log_prob(z))


class Flow(PriorPushForward):
    """phi = f_K o ... o f_1 (z), z ~ prior, with log q(phi) carried through the layers.

    log q(phi) = log r(z) - sum_k log |det J_k|, every term summed over the global lattice.

    Parameters
    ----------
    prior : GaussianPrior
        Supplies ``sample(batch, draw, start)`` and ``log_prob``; fixes dtype and device.
    layers : sequence of modules
        Each with ``forward(x, logq) -> (y, logq)`` and ``reverse(y, logq) -> (x, logq)``.
    """

    def __init__(self, prior, layers):
        super().__init__()
        self.prior = prior
        self.layers = nn.ModuleList(layers)

    def forward(self, x, logq):
        """Apply the layers in order: (z, log r(z)) -> (phi, log q(phi))."""
        for layer in self.layers:
            x, logq = layer(x, logq)
        return x, logq

    def reverse(self, y, logq):
        """Invert the layers in reverse order: (phi, log q(phi)) -> (z, log r(z))."""
        for layer in reversed(self.layers):
            y, logq = layer.reverse(y, logq)
        return y, logq
