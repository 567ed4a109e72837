"""Objects of a run built from its Settings: lattice, theory, sampler, initial state, and the
flow of flow sampling (torch is imported only for that)."""

from lqcdflow import theories
from lqcdflow.backend import make_backend
from lqcdflow.config import ConfigError
from lqcdflow.kernels.select import md_kernels
from lqcdflow.mc.hmc import HMC, initial_state
from lqcdflow.mc.integrators import SCHEMES
from lqcdflow.parallel import Lattice
from lqcdflow.rng import CounterRNG


def make_lattice(config, comm):
    lat, run = config.lattice, config.run
    grid = None if lat.grid == "auto" else lat.grid
    return Lattice(lat.shape, comm=comm, grid=grid,
                   backend=make_backend(run.backend, run.dtype),
                   gpu_aware_mpi=run.gpu_aware_mpi)


def make_theory(config, lattice):
    """The theory named by [theory] name, with its couplings, on ``lattice``."""
    return theories.module(config.theory.name).make(config.theory, lattice)


def make_scheme(config):
    sampler = config.sampler
    if sampler.integrator == "omelyan2":
        return SCHEMES["omelyan2"](sampler.xi)
    return SCHEMES[sampler.integrator]()


def make_hmc(config, theory):
    """HMC of the [sampler] settings; ``n_steps`` as a list nests one level per force term of
    the theory (ConfigError if their numbers differ)."""
    sampler = config.sampler
    kernels = make_kernels(config, theory)
    try:
        return HMC.of(theory, make_scheme(config), sampler.n_steps, sampler.trajectory_length,
                      CounterRNG(config.run.seed), kernels)
    except ValueError as e:
        raise ConfigError(f"[sampler] n_steps = {sampler.n_steps}: {e}") from None


def make_kernels(config, theory):
    """The molecular-dynamics kernels of [run] kernels (lqcdflow.kernels.select)."""
    try:
        return md_kernels(theory, config.run.kernels)
    except ValueError as e:
        raise ConfigError(f"[run] {e}") from None


def make_update(config, theory):
    """The Markov chain update of [sampler] algorithm: HMC (:func:`make_hmc`), Langevin
    (lqcdflow.mc.langevin) or checkerboard sweeps of local updates (lqcdflow.mc.local)."""
    sampler = config.sampler
    if sampler.algorithm == "hmc":
        return make_hmc(config, theory)
    if sampler.algorithm == "langevin":
        from lqcdflow.mc.langevin import langevin

        return langevin(theory, sampler.epsilon, CounterRNG(config.run.seed),
                        sampler.metropolis, make_kernels(config, theory))
    from lqcdflow.mc.local import LocalSampler

    metropolis = {"hits": sampler.hits, "width": sampler.width} \
        if sampler.algorithm == "metropolis" else {}
    try:
        return LocalSampler(theory, sampler.algorithm, config.run.seed, **metropolis,
                            kernels=config.run.kernels)
    except ValueError as e:
        raise ConfigError(f"[run] {e}") from None


def make_initial_state(config, theory):
    """The chain's state at trajectory 0: the theory's cold or hot start, or (start = "file")
    the configuration of [run] start_file in any format lqcdflow reads."""
    if config.run.start == "file":
        from lqcdflow.io import gauge_files
        from lqcdflow.mc.hmc import ChainState

        field, _ = gauge_files.read(config.run.start_file, theory)
        return ChainState(field)
    return initial_state(theory, CounterRNG(config.run.seed), config.run.start)


def make_flow_spec(config):
    """The spec of the run file's [flow] architecture and its target: a FlowSpec of phi^4 (of
    the run file's form), or a U1FlowSpec (lqcdflow.flows.gauge).

    ``bins`` and ``bound`` are passed for spline couplings only (None otherwise, see config).
    """
    from lqcdflow.flows import FlowSpec
    from lqcdflow.flows.gauge import U1FlowSpec

    flow, theory = config.flow, config.theory
    if theory.name == "u1":
        circle_map = ({"bins": flow.bins} if flow.coupling == "spline"
                      else {"components": flow.components})
        return U1FlowSpec(shape=tuple(config.lattice.shape), n_layers=flow.n_layers,
                          hidden=tuple(flow.hidden), kernel_size=flow.kernel_size,
                          beta=theory.beta, seed=config.run.seed, coupling=flow.coupling,
                          **circle_map)
    spline = {"bins": flow.bins, "bound": flow.bound} if flow.coupling == "spline" else {}
    return FlowSpec(shape=tuple(config.lattice.shape), n_layers=flow.n_layers,
                    hidden=tuple(flow.hidden), kernel_size=flow.kernel_size,
                    m2=theory.m2, lam=theory.lambda_, seed=config.run.seed,
                    coupling=flow.coupling, z2=flow.z2, form=theory.form, kappa=theory.kappa,
                    **spline)


def make_diffusion_spec(config):
    """The DiffusionSpec of the run file's [diffusion] architecture and its target."""
    from lqcdflow.flows.diffusion import DiffusionSpec

    diffusion, theory = config.diffusion, config.theory
    return DiffusionSpec(shape=tuple(config.lattice.shape), hidden=tuple(diffusion.hidden),
                         ode_steps=diffusion.ode_steps, t_min=diffusion.t_min,
                         beta_min=diffusion.beta_min, beta_max=diffusion.beta_max,
                         m2=theory.m2, lam=theory.lambda_, seed=config.run.seed)


def make_model_spec(config):
    """The spec of the run file's trained model: a flow ([flow]) or a diffusion model
    ([diffusion])."""
    if config.sampler.algorithm == "diffusion":
        return make_diffusion_spec(config)
    return make_flow_spec(config)


def make_model(config, lattice):
    """(spec, model, Adam optimiser) of the run file's trained model on ``lattice``, freshly
    initialised.

    dtype from [run] dtype; device "cuda" with [run] backend = "cupy", else "cpu". A model
    that does not fit the lattice (dimension, kernel or halo wider than a rank's block) is a
    ConfigError.
    """
    import torch

    spec = make_model_spec(config)
    run, keys = config.run, config.trained
    dtype = getattr(torch, run.dtype)  # "float64" or "float32"
    device = "cuda" if run.backend == "cupy" else "cpu"
    try:
        model = spec.build(lattice, keys.init_seed, dtype=dtype, device=device)
    except ValueError as e:
        raise ConfigError(f"[{config.trained_name}] does not fit [lattice] on {lattice.size} "
                          f"rank(s): {e}") from None
    return spec, model, torch.optim.Adam(model.parameters(), lr=keys.learning_rate)
