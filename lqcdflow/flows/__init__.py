"""Model-parallel normalizing flows: every layer works on a rank's sub-lattice.

Convolutions get periodic halos from the neighbouring ranks through a differentiable halo
exchange (:mod:`.halo`), global sums (log-densities, actions) go through a differentiable
all-reduce and parameter gradients are summed over ranks (:mod:`.reduce`), so that the
decomposed model computes the single-process model. Needs torch (``pip install .[flow]``).
"""

from lqcdflow.flows.action import phi4_action
from lqcdflow.flows.halo import HaloPad, HaloPadAdjoint, halo_pad, halo_pad_adjoint
from lqcdflow.flows.layers import (AffineCoupling, Coupling, PeriodicConv, affine_couplings,
                                   checkerboard, conditioner)
from lqcdflow.flows.model import Flow
from lqcdflow.flows.nmcmc import STREAM_NMCMC, ChainState, NMCMCResult, nmcmc
from lqcdflow.flows.prior import STREAM_FLOW_PRIOR, GaussianPrior
from lqcdflow.flows.reduce import AllreduceSum, allreduce_gradients, allreduce_sum
from lqcdflow.flows.spline import RationalQuadraticSpline, SplineCoupling, spline_couplings
from lqcdflow.flows.state import FlowSpec, load_state, save_state
from lqcdflow.flows.train import (TrainMetrics, constant_lr, cosine_lr, ess_fraction, step_lr,
                                  train, train_step)

__all__ = ["AffineCoupling", "AllreduceSum", "ChainState", "Coupling", "Flow", "FlowSpec",
           "GaussianPrior", "HaloPad", "HaloPadAdjoint", "NMCMCResult", "PeriodicConv",
           "RationalQuadraticSpline", "STREAM_FLOW_PRIOR", "STREAM_NMCMC", "SplineCoupling",
           "TrainMetrics", "affine_couplings", "allreduce_gradients",
           "allreduce_sum", "checkerboard", "conditioner", "constant_lr", "cosine_lr",
           "ess_fraction", "halo_pad", "halo_pad_adjoint", "load_state", "nmcmc",
           "phi4_action", "save_state", "spline_couplings", "step_lr", "train", "train_step"]
