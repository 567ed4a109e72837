"""Objects of a run built from a validated run file: lattice, action, sampler, initial state."""

from lqcdflow.backend import make_backend
from lqcdflow.mc.hmc import HMC, initial_state
from lqcdflow.mc.integrators import SCHEMES
from lqcdflow.parallel import Lattice
from lqcdflow.rng import CounterRNG
from lqcdflow.theories.phi4 import Phi4Action, Phi4Couplings


def make_lattice(config, comm):
    lat, run = config["lattice"], config["run"]
    grid = None if lat["grid"] == "auto" else lat["grid"]
    return Lattice(lat["shape"], comm=comm, grid=grid,
                   backend=make_backend(run["backend"], run["dtype"]),
                   gpu_aware_mpi=run["gpu_aware_mpi"])


def make_action(config, lattice):
    theory = config["theory"]
    if theory["form"] == "hopping":
        couplings = Phi4Couplings.hopping(theory["kappa"], theory["lambda"])
    else:
        couplings = Phi4Couplings.standard(theory["m2"], theory["lambda"], lattice.ndim)
    return Phi4Action(lattice, couplings)


def make_scheme(config):
    sampler = config["sampler"]
    if sampler["integrator"] == "omelyan2":
        return SCHEMES["omelyan2"](sampler["xi"])
    return SCHEMES[sampler["integrator"]]()


def make_hmc(config, action):
    sampler = config["sampler"]
    return HMC(action, make_scheme(config), sampler["n_steps"], sampler["trajectory_length"],
               CounterRNG(config["run"]["seed"]))


def make_initial_state(config, lattice):
    return initial_state(lattice, CounterRNG(config["run"]["seed"]), config["run"]["start"])
