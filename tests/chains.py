"""A short HMC chain of any theory, for the bitwise comparisons across process grids."""

from lqcdflow.mc.driver import run_chain
from lqcdflow.mc.hmc import HMC, initial_state
from lqcdflow.mc.integrators import omelyan2
from lqcdflow.rng import CounterRNG


def hmc_chain(theory, n_traj, seed=3, n_steps=4, start="hot"):
    """(gathered final field, [(trajectory, delta_H, accepted)]) of an omelyan2 HMC chain of
    ``theory`` (tau = 1) from its hot or cold start."""
    rng = CounterRNG(seed)
    hmc = HMC.of(theory, omelyan2(), n_steps, 1.0, rng)
    history = []
    state = run_chain(hmc, initial_state(theory, rng, start), n_traj,
                      [lambda s, info: history.append((info.trajectory, info.delta_H,
                                                        info.accepted))])
    return theory.lattice.gather(state.field), history
