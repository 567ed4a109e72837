"""Model-parallel normalizing flows: every layer works on a rank's sub-lattice.

Convolutions get periodic halos from the neighbouring ranks through the lattice's own halo
exchange, and global sums (log-densities, actions) are the lattice's reproducible sums, both
differentiable (:mod:`.torch_lattice`); parameter gradients are summed over ranks
(:mod:`.reduce`), so that the decomposed model computes the single-process model, and its
Markov chains are bitwise those of one process. Needs torch (``pip install .[flow]``).
"""

from lqcdflow.flows.layers import (AffineCoupling, Coupling, PeriodicConv, SiLU, SiteLinear,
                                   affine_couplings, checkerboard, conditioner, softplus)
from lqcdflow.flows.model import Flow
from lqcdflow.flows.nmcmc import STREAM_NMCMC, ChainState, NMCMCResult, nmcmc
from lqcdflow.flows.prior import STREAM_FLOW_PRIOR, GaussianPrior
from lqcdflow.flows.reduce import allreduce_gradients
from lqcdflow.flows.spline import RationalQuadraticSpline, SplineCoupling, spline_couplings
from lqcdflow.flows.state import FlowSpec, load_state, save_state
from lqcdflow.flows.torch_lattice import TorchLattice, pad, sample_sum, shift, window
from lqcdflow.flows.train import (TrainMetrics, constant_lr, cosine_lr, ess_fraction, step_lr,
                                  train, train_step)

__all__ = ["AffineCoupling", "ChainState", "Coupling", "Flow", "FlowSpec", "GaussianPrior",
           "NMCMCResult", "PeriodicConv", "RationalQuadraticSpline", "STREAM_FLOW_PRIOR",
           "STREAM_NMCMC", "SiLU", "SiteLinear", "SplineCoupling", "TorchLattice",
           "TrainMetrics", "affine_couplings", "allreduce_gradients", "checkerboard",
           "conditioner", "constant_lr", "cosine_lr", "ess_fraction", "load_state", "nmcmc",
           "pad", "sample_sum", "save_state", "shift", "softplus", "spline_couplings",
           "step_lr", "train", "train_step", "window"]
