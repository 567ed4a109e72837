"""The commands of trained models: ``lqcdflow train RUN.toml`` and ``lqcdflow sample RUN.toml``,
for a flow ([sampler] algorithm = "nmcmc", [flow]) or a diffusion model (algorithm =
"diffusion", [diffusion]).

Training (:func:`run_training`) takes Adam steps, step n with learning rate lr(n) of the
schedule: a flow minimises the reverse Kullback-Leibler divergence
(:func:`lqcdflow.flows.train.train_step`, its batch from the prior's draw n), a diffusion model
the denoising score-matching loss on the configurations of an ensemble
(:func:`lqcdflow.flows.diffusion.denoising_step`). It saves the model and optimiser state
(:func:`lqcdflow.flows.state.save_state`) every ``save_every`` steps, at the end and when
stopped early, and continues from that state file: n steps, a stop and the remaining steps on
any number of ranks give the parameters of an uninterrupted run (to rounding: sums over ranks).

Sampling (:func:`run_sampling`) runs the independence Metropolis chain of the trained model
(:class:`lqcdflow.flows.sampler.IndependenceMetropolis`) in the production runner
(:func:`lqcdflow.runner.run_sampler`): the ensemble file, configurations, checkpoints,
restarts and early stops are those of ``lqcdflow run``.

Both stop early on a signal or the walltime (:class:`lqcdflow.mc.stop.StopRule`) with exit code
EXIT_RESUBMIT, after saving what they did.
"""

import hashlib
import os
import time

import numpy as np
import torch
from mpi4py import MPI

from lqcdflow import build
from lqcdflow.config import SAMPLING_DRAW, ConfigError
from lqcdflow.flows.diffusion import DenoisingBatches, denoising_step
from lqcdflow.flows.sampler import IndependenceMetropolis
from lqcdflow.flows.state import load_state, save_state, training_data_of
from lqcdflow.flows.train import constant_lr, cosine_lr, train_step
from lqcdflow.io.checkpoint import CheckpointError
from lqcdflow.io.configurations import ConfigurationReader
from lqcdflow.io.files import reason, replaced_atomically
from lqcdflow.io.locks import WriterLock
from lqcdflow.mc.stop import EXIT_RESUBMIT
from lqcdflow.parallel import memory
from lqcdflow.runner import run_sampler, warn


def load_flow_state(path, flow, optimizer, spec, comm, convert_dtype=False):
    """Load the state file into ``flow`` and ``optimizer``; return (training step, the file's
    dtype name) (:func:`lqcdflow.flows.state.load_state`).

    Raises ConfigError (one line, every rank) if it is unreadable, holds another flow, or
    (unless ``convert_dtype``) one of another dtype.
    """
    try:
        return load_state(path, flow, optimizer, spec, comm, convert_dtype)
    except ValueError as e:
        message = str(e).splitlines()[0]
        raise ConfigError(message if path in message
                          else f"cannot read flow state {path}: {message}") from None


def save_flow_state(path, flow, optimizer, step, spec, comm, training_data=None):
    """Write the state file atomically (a temporary file, fsynced, renamed over ``path``),
    with ``training_data`` (:func:`lqcdflow.flows.state.save_state`).

    Rank 0 writes (the parameters and Adam state are the same on every rank); a crash at any
    instant leaves the previous state file intact. Raises CheckpointError on every rank if
    the file cannot be written.
    """
    problem = None
    if comm.Get_rank() == 0:
        try:
            with replaced_atomically(path) as temporary:
                save_state(temporary, flow, optimizer, step, spec, MPI.COMM_SELF,
                           training_data)
        except OSError as e:
            problem = f"cannot write flow state {path}: {reason(e)}"
    problem = comm.bcast(problem, root=0)
    if problem:
        raise CheckpointError(problem)


class _TrainingProgress:
    """Every ``every`` steps and at the last one: the progress line of the step just done.

    step/steps, the figures of the step's metrics (``summary()``: for a flow the loss, batch
    ESS / N and acceptance estimate, lqcdflow.flows.train.TrainMetrics; for a diffusion model
    the loss), the learning rate, the mean seconds per step since the previous line and the
    time to finish.
    """

    def __init__(self, every, first_step, steps, print_fn):
        self.every, self.steps, self.print_fn = every, steps, print_fn
        self.last_time, self.last_step = time.monotonic(), first_step

    def __call__(self, step, metrics):
        if not self.print_fn or (step % self.every and step != self.steps):
            return
        now = time.monotonic()
        seconds = (now - self.last_time) / (step - self.last_step)
        self.last_time, self.last_step = now, step
        self.print_fn(f"step {step:>7d}/{self.steps}  {metrics.summary()}  lr {metrics.lr:.3e}  "
                      f"{seconds:8.4f} s/step  ETA {seconds * (self.steps - step):8.0f} s")


def _check_memory(config, lattice, batch, what):
    """ConfigError unless ``what`` ("training" or "sampling") fits in memory (see
    lqcdflow.parallel.memory and the spec's memory_needed)."""
    needed = build.make_model_spec(config).memory_needed(
        lattice.local_volume, batch, np.dtype(config.run.dtype).itemsize,
        training=what == "training")
    memory.check(lattice, needed, f"{config.trained_name} {what} with a batch of {batch}")


def training_data(config, lattice):
    """The configurations a diffusion model learns from: those of [diffusion] data after its
    run's thermalisation (trajectory > its sampler.n_thermalization).

    Returns (fields, identity): this rank's blocks as one tensor (N, *local_shape) in [run]
    dtype, and "N configurations, sha256 H" with H (16 hex digits) of the SHA-256 of their
    trajectory numbers and field checksums (int64, uint64), the same on any decomposition. The
    file must hold phi^4 in the standard form on this lattice (its couplings may differ from
    the target's: the chain is exact anyway).
    """
    path = config.diffusion.data
    if not lattice.comm.bcast(os.path.isfile(path) if lattice.rank == 0 else None, root=0):
        raise ConfigError(f"[diffusion] data {path} not found: generate it first (lqcdflow run "
                          "of an ensemble with [output] configurations)")
    theory = build.make_theory(config, lattice)
    with ConfigurationReader(path, theory) as reader:
        form = str(reader.attrs.get("theory.form", ""))
        if form != "standard":
            raise ConfigError(f"[diffusion] data {path} holds phi^4 in the {form or 'unknown'} "
                              "form; the model learns fields of the standard form")
        skip = int(reader.attrs.get("sampler.n_thermalization", 0))
        used = [i for i in range(reader.count) if reader.trajectories[i] > skip]
        fields = [lattice.backend.asnumpy(reader.read(i)[0]) for i in used]
        digest = hashlib.sha256(
            np.asarray(reader.trajectories, np.int64)[used].tobytes()
            + np.asarray(reader.checksums, np.uint64)[used].tobytes()).hexdigest()
    if not fields:
        raise ConfigError(f"[diffusion] data {path} holds no configuration after its "
                          f"thermalisation (trajectory > {skip})")
    return (torch.from_numpy(np.stack(fields)).to(getattr(torch, config.run.dtype)),
            f"{len(fields)} configurations, sha256 {digest[:16]}")


def _training_step(config, lattice, model, optimizer, schedule, data):
    """step n -> the metrics of training step n of the run file's model (a diffusion model
    learns from ``data``, this rank's blocks of its configurations)."""
    keys = config.trained
    if config.sampler.algorithm == "nmcmc":
        target = build.make_model_spec(config).target(lattice)
        return lambda n: train_step(model, optimizer, target, keys.batch, n, schedule,
                                    keys.max_grad_norm)
    data = data.to(next(model.parameters()).device)
    batches = DenoisingBatches(data, lattice, keys.batch, config.run.seed, keys.t_min)
    return lambda n: denoising_step(model.score, optimizer, batches, n, schedule,
                                    keys.max_grad_norm)


def _describe(config, model):
    """The model, for the log line that starts training."""
    n = sum(p.numel() for p in model.parameters())
    keys = config.trained
    if config.sampler.algorithm == "nmcmc":
        return f"a flow of {n} parameters ({keys.coupling} couplings, {keys.n_layers} layers)"
    return (f"a diffusion model of {n} parameters (hidden {list(keys.hidden)}, "
            f"{keys.ode_steps} ODE steps)")


def run_training(config, comm, stop_rule, say=None):
    """Train (or continue training) the run file's flow or diffusion model; returns the exit
    code.

    0: ``steps`` reached (also when the state file already was); EXIT_RESUBMIT: stopped early
    by ``stop_rule``, with the state saved. A state file of another dtype than [run] dtype is
    a ConfigError: training continues only in the precision it started in. ``say`` (rank 0)
    prints what happens and a progress line every ``progress_every`` steps
    (:class:`_TrainingProgress`). The state file is locked while training (one writer).
    """
    with WriterLock(comm, [(config.trained.state, f"{config.trained_name} state")]):
        return _run_training(config, comm, stop_rule, say)


def _run_training(config, comm, stop_rule, say):
    """:func:`run_training` with its lock held."""
    fl, ck = config.trained, config.checkpoint
    path, steps = fl.state, fl.steps
    stop_rule.walltime, stop_rule.margin = ck.walltime, ck.margin
    lattice = build.make_lattice(config, comm)
    _check_memory(config, lattice, fl.batch, "training")
    spec, flow, optimizer = build.make_model(config, lattice)
    data, identity = training_data(config, lattice) if config.diffusion else (None, None)
    exists = lattice.comm.bcast(os.path.exists(path) if lattice.rank == 0 else None, root=0)
    step, saved = 0, None
    if exists and ck.restart == "auto":
        step, _ = load_flow_state(path, flow, optimizer, spec, lattice.comm)
        _check_same_data(config, identity, training_data_of(path, lattice.comm))
        saved = step
        if say:
            say(f"continuing training from {path} at step {step}")
    elif exists and not config.output.overwrite:
        raise ConfigError(f"flow state {path} exists; use [checkpoint] restart = \"auto\" to "
                          "continue it, or [output] overwrite = true to start afresh")
    if step >= steps:
        if say:
            say(f"training complete: step {step} of {steps} in {path}; nothing to do")
        return 0
    schedule = (cosine_lr(fl.learning_rate, steps, fl.lr_min)
                if fl.schedule == "cosine" else constant_lr(fl.learning_rate))
    if say:
        say(f"training {_describe(config, flow)} from step {step} to {steps}, batch "
            f"{fl.batch}, {fl.schedule} learning rate from {fl.learning_rate:g}")
    if say and identity:
        say(f"learning from {identity} in {fl.data}")
    training_step = _training_step(config, lattice, flow, optimizer, schedule, data)
    progress = _TrainingProgress(fl.progress_every, step, steps, say)
    stop_rule.loop_starts()
    while step < steps and not stop_rule.reason():
        metrics = training_step(step)
        step += 1
        stop_rule.trajectory_done(None, None)
        progress(step, metrics)
        if step % fl.save_every == 0:
            _save(path, flow, optimizer, step, spec, lattice.comm, stop_rule, identity)
            saved = step
    if saved != step:
        _save(path, flow, optimizer, step, spec, lattice.comm, stop_rule, identity)
    if stop_rule.why:
        stop_rule.report(f"stopped at step {step} of {steps} ({stop_rule.why}); state saved to "
                         f"{path}, exit code {EXIT_RESUBMIT}: resubmit to continue", say)
        return EXIT_RESUBMIT
    if say:
        say(f"training complete: step {step} of {steps}, state in {path}")
    return 0


def _check_same_data(config, identity, stored):
    """ConfigError if a diffusion model's continued training would learn from other
    configurations than it began with (the batches of step n depend on all of them)."""
    if identity != stored and stored is not None:
        raise ConfigError(f"[diffusion] data {config.diffusion.data} now gives {identity}, but "
                          f"the training in {config.trained.state} began with {stored}: "
                          "restore the data, or train afresh (another [diffusion] state, or "
                          "--restart never with [output] overwrite = true)")


def _save(path, flow, optimizer, step, spec, comm, stop_rule, identity):
    start = time.monotonic()
    save_flow_state(path, flow, optimizer, step, spec, comm, identity)
    stop_rule.checkpoint_took(time.monotonic() - start)


def run_sampling(config, run_file_text, comm, stop_rule, say=None):
    """Generate (or continue) the ensemble of the trained model's chain; returns the exit
    code.

    The state file must exist (ConfigError otherwise); a flow trained for fewer than
    ``steps`` steps, or in another dtype than [run] dtype (its parameters are converted), is
    used with a warning. At the end (rank 0, ``say``) a line gives the
    chain's acceptance, the ESS / N of the importance weights of all its proposals and its
    longest run of rejections. Exit codes as :func:`lqcdflow.runner.run_sampler`.
    """
    fl, kind = config.trained, config.trained_name
    path = fl.state
    lattice = build.make_lattice(config, comm)
    theory = build.make_theory(config, lattice)
    _check_memory(config, lattice, config.sampler.batch, "sampling")
    spec, flow, optimizer = build.make_model(config, lattice)
    if not lattice.comm.bcast(os.path.exists(path) if lattice.rank == 0 else None, root=0):
        raise ConfigError(f"{kind} state {path} not found; train the {kind} first: "
                          "lqcdflow train RUN.toml")
    step, dtype = load_flow_state(path, flow, optimizer, spec, lattice.comm, convert_dtype=True)
    if step < fl.steps:
        warn(lattice.comm, f"the {kind} in {path} is trained for {step} of {fl.steps} steps; "
             "sampling with it anyway")
    if dtype != config.run.dtype:
        warn(lattice.comm, f"the {kind} in {path} was trained in {dtype}; sampling in "
             f"{config.run.dtype} with its parameters converted")
    sampler = IndependenceMetropolis(flow, lattice, spec.target(lattice),
                                     config.sampler.batch, config.run.seed, SAMPLING_DRAW)
    code, state = run_sampler(config, run_file_text, theory, sampler, stop_rule, say)
    if say and state.trajectory:
        say(f"{kind} chain: acceptance {state.accepted / state.trajectory:.4f}, ESS/N of the "
            f"importance weights {state.ess_fraction:.4f} over {state.trajectory} proposals, "
            f"longest run of rejections {state.longest_rejection_run}")
    return code
