"""A production Markov chain run: start or continue a chain, measure, save, checkpoint, stop.

The run is a loop of trajectories (lqcdflow.mc.driver.run_chain) with hooks that record
observables, save configurations, write checkpoints and print progress. It continues from the
newest valid checkpoint when there is one (``restart = "auto"``), on any number of ranks, and
stops early, with a checkpoint, on a signal or before the walltime (exit code EXIT_RESUBMIT).

:func:`run_sampler` does this for any sampler that, besides ``step(state) -> (state, info)``,
says how its chain starts, what of its state a checkpoint must hold and which identity a
checkpoint must agree with (see :class:`ChainSampler`; flow sampling:
:class:`lqcdflow.flows.sampler.IndependenceMetropolis`). :func:`run_ensemble` runs HMC or
local updates.
"""

import os
import sys
import time

import numpy as np

from lqcdflow import build
from lqcdflow.config import LOCAL_ALGORITHMS, ConfigError
from lqcdflow.io import checkpoint
from lqcdflow.io.configurations import ConfigurationWriter
from lqcdflow.io.ensemble import EnsembleWriter, run_attributes
from lqcdflow.io.locks import WriterLock
from lqcdflow.mc.driver import Measure, Progress, run_chain
from lqcdflow.mc.hmc import ChainState, memory_needed
from lqcdflow.parallel import memory
from lqcdflow.mc.stop import EXIT_RESUBMIT


def warn(comm, text):
    """Print ``lqcdflow: warning: TEXT`` to stderr on rank 0 of ``comm``."""
    if comm.Get_rank() == 0:
        print(f"lqcdflow: warning: {text}", file=sys.stderr, flush=True)


# Checkpoints written before flow sampling existed have no sampler.algorithm: all were HMC.
_ALGORITHM_OF_OLD_CHECKPOINTS = "hmc"


class ChainSampler:
    """A Markov chain update (HMC, lqcdflow.mc.hmc; Langevin, lqcdflow.mc.langevin; or sweeps
    of local updates, lqcdflow.mc.local, as [sampler] algorithm says) with what
    :func:`run_sampler` needs to start and continue it.

    A cold or hot start (``[run] start``) of the theory; a checkpoint holds (field,
    trajectory, accepted), the whole chain state, since the random numbers are counter-based.
    ``record`` and ``updates_per_step`` are the update's.
    """

    def __init__(self, config, theory):
        self.config, self.theory = config, theory
        self.update = build.make_update(config, theory)
        self.record, self.updates_per_step = self.update.record, self.update.updates_per_step

    def step(self, state):
        return self.update.step(state)

    def initial_state(self):
        return build.make_initial_state(self.config, self.theory)

    def state_attrs(self, state):
        return {}

    def restore(self, field, attrs):
        return ChainState(field, int(attrs["trajectory"]), int(attrs["accepted"]))

    def identity(self):
        return {}

    def describe(self):
        return f"{self.update.name} of {self.theory.describe()}; {self.update.describe()}"


def outputs(config):
    """[(path, what, kind)] a chain of ``config`` writes: its output file, its configuration
    file ("" when none) and its checkpoint directory (kind "file" or "directory"): what the
    command checks before the run (lqcdflow.io.paths) and the run locks."""
    out = config.output
    return [(out.file, "output file", "file"),
            (out.configurations, "configuration file", "file"),
            (config.checkpoint.directory, "checkpoint directory", "directory")]


def _chain_identity(config, sampler):
    """What a checkpoint must agree with beyond checkpoint.identity: algorithm and sampler."""
    return {"sampler.algorithm": config.sampler.algorithm, **sampler.identity()}


def newest_valid_checkpoint(config, theory, sampler):
    """(field, attrs) of the newest checkpoint that verifies, or None if there are none.

    Corrupt or truncated checkpoints are skipped with a warning naming them. Raises
    CheckpointError if checkpoints exist but none is valid, and ConfigError if the newest
    valid one belongs to a different run (lattice, theory, seed, precision, algorithm, or
    what the sampler's ``identity()`` names).
    """
    lattice = theory.lattice
    directory = config.checkpoint.directory
    paths = lattice.comm.bcast(checkpoint.list_checkpoints(directory)
                               if lattice.rank == 0 else None, root=0)
    wanted_identity = {**checkpoint.identity(config), **_chain_identity(config, sampler)}
    for path in paths:
        # the identity first, from attributes whose state hash holds: a checkpoint of another
        # theory is another run's, not a damaged one (it has no field of this theory)
        attrs = lattice.comm.bcast(checkpoint.verified_attributes(path)
                                   if lattice.rank == 0 else None, root=0)
        if attrs is not None:
            _check_identity(path, attrs, wanted_identity)
        try:
            return checkpoint.load(path, lattice, theory.field)
        except checkpoint.CheckpointError as e:
            warn(lattice.comm, f"skipping checkpoint {e}")
    if paths:
        raise checkpoint.CheckpointError(f"no valid checkpoint in {directory}")
    return None


def _check_identity(path, attrs, wanted_identity):
    """ConfigError unless the checkpoint's ``attrs`` agree with ``wanted_identity``."""
    attrs = {"sampler.algorithm": _ALGORITHM_OF_OLD_CHECKPOINTS, **attrs}
    for key, wanted in wanted_identity.items():
        there = np.asarray(attrs.get(key, "")).tolist()
        if there != np.asarray(wanted).tolist():
            raise ConfigError(f"checkpoint {path} belongs to another run: {key} = "
                              f"{there!r} there, {wanted!r} in the run file")


class Checkpointer:
    """Hook: commit the output and write a checkpoint every ``every`` trajectories."""

    def __init__(self, config, theory, sampler, writer, configurations, stop_rule):
        self.config, self.theory, self.sampler = config, theory, sampler
        self.writer, self.configurations, self.stop_rule = writer, configurations, stop_rule
        self.every = config.checkpoint.every
        self.last = None

    def __call__(self, state, info):
        if state.trajectory % self.every == 0:
            self.write(state)

    def write(self, state):
        """Commit the ensemble and write the checkpoint of ``state`` (once per trajectory)."""
        if self.last == state.trajectory:
            return
        start = time.monotonic()
        lengths = self.writer.commit()
        extra = {"output.mc": lengths["mc"], "output.observables": lengths["observables"],
                 "output.configurations": self.configurations.count
                 if self.configurations else 0,
                 **_chain_identity(self.config, self.sampler),
                 **self.sampler.state_attrs(state)}
        ck = self.config.checkpoint
        checkpoint.save(ck.directory, self.theory.lattice, self.theory.field, state, self.config,
                        extra, ck.keep)
        self.stop_rule.checkpoint_took(time.monotonic() - start)
        self.last = state.trajectory


def _clear_old_checkpoints(config, lattice):
    """A fresh run must not mix with checkpoints of an earlier one (removed only on overwrite)."""
    directory = config.checkpoint.directory
    old = lattice.comm.bcast(checkpoint.list_checkpoints(directory)
                             if lattice.rank == 0 else None, root=0)
    if not old:
        return
    if not config.output.overwrite:
        raise ConfigError(f"checkpoint directory {directory} holds checkpoints of an earlier "
                          'run; use [checkpoint] restart = "auto", another directory, or '
                          "[output] overwrite = true")
    if lattice.rank == 0:
        for path in old:
            os.remove(path)


def run_ensemble(config, run_file_text, comm, stop_rule, say=None):
    """Generate (or continue) the ensemble of the run file's Markov chain (HMC, Langevin or
    local updates); returns the exit code.

    ``stop_rule`` (a StopRule whose signal handlers are installed) decides when to stop early.
    0: n_trajectories reached; EXIT_RESUBMIT: stopped early with a checkpoint.
    """
    lattice = build.make_lattice(config, comm)
    theory = build.make_theory(config, lattice)
    if config.sampler.algorithm not in LOCAL_ALGORITHMS:  # sweeps need less than HMC
        memory.check(lattice, memory_needed(theory), f"HMC of {config.theory.name}")
    code, _ = run_sampler(config, run_file_text, theory, ChainSampler(config, theory),
                          stop_rule, say)
    return code


def run_sampler(config, run_file_text, theory, sampler, stop_rule, say=None):
    """Generate (or continue) the ensemble of ``sampler``'s chain; returns (exit code, state).

    The output, configurations and checkpoints are locked for the run (one writer per chain:
    a second process on any of them is refused with LockError, see lqcdflow.io.locks).

    Parameters
    ----------
    config : lqcdflow.config.Settings
        The validated run file.
    run_file_text : str
        Stored in the ensemble's attributes.
    theory : lqcdflow.theories.base.Theory
        Declares and measures the observables and the field; its lattice holds the chain.
    sampler : object
        ``step(state) -> (state, info)``, ``initial_state()``, ``state_attrs(state)`` (scalar
        checkpoint attributes beyond the field, trajectory and accepted),
        ``restore(field, attrs)``
        (the state of a checkpoint), ``identity()`` (attributes a checkpoint must match),
        ``describe()`` (a line for the log), ``record`` (the /mc series of ``info``, see
        lqcdflow.io.ensemble) and ``updates_per_step`` (accept/reject decisions per step),
        e.g. :class:`ChainSampler`.
    stop_rule : StopRule
        With its signal handlers installed; decides when to stop early.
    say : callable or None
        Prints progress (rank 0).

    Returns
    -------
    (int, state)
        0 when n_trajectories are reached, EXIT_RESUBMIT when stopped early with a
        checkpoint; and the chain's final state.
    """
    with WriterLock(theory.lattice.comm, [(path, what) for path, what, _ in outputs(config)]):
        return _run_sampler(config, run_file_text, theory, sampler, stop_rule, say)


def _run_sampler(config, run_file_text, theory, sampler, stop_rule, say):
    """:func:`run_sampler` with its locks held."""
    lattice = theory.lattice
    out, ck, chain = config.output, config.checkpoint, config.sampler
    stop_rule.walltime, stop_rule.margin = ck.walltime, ck.margin
    attrs = run_attributes(config, theory, run_file_text)

    found = newest_valid_checkpoint(config, theory, sampler) if ck.restart == "auto" else None
    if found is None:
        _clear_old_checkpoints(config, lattice)
        state = sampler.initial_state()
        resume = {"mc": None, "configurations": None}
        if say and config.run.start == "file":
            say(f"starting from {config.run.start_file}")
    else:
        field, ck_attrs = found
        state = sampler.restore(field, ck_attrs)
        resume = {"mc": {"mc": int(ck_attrs["output.mc"]),
                         "observables": int(ck_attrs["output.observables"])},
                  "configurations": int(ck_attrs["output.configurations"])}
        if say:
            say(f"continuing from checkpoint at trajectory {state.trajectory}")
    stop_rule.setup_ends()  # files are written from here on
    writer = EnsembleWriter(out.file, attrs, theory.observables, lattice.comm,
                            overwrite=out.overwrite, resume=resume["mc"], record=sampler.record)
    configurations = None
    if out.configurations:
        configurations = ConfigurationWriter(out.configurations, theory, attrs, out.save_every,
                                             overwrite=out.overwrite,
                                             resume=resume["configurations"])
    if say:
        say(sampler.describe())

    checkpointer = Checkpointer(config, theory, sampler, writer, configurations, stop_rule)
    if found is None:
        # a chain killed before its first periodic checkpoint continues from this one; without
        # it, the records it committed would make its output look like another run's
        checkpointer.write(state)
    hooks = [Measure(theory, writer, chain.measure_every)]
    if configurations:
        hooks.append(lambda s, info: configurations.save(s))
    hooks += [stop_rule.trajectory_done, checkpointer,
              Progress(writer, out.progress_every, state.trajectory, chain.n_trajectories,
                       print_fn=say, health=theory.health, updates=sampler.updates_per_step)]
    stop_rule.loop_starts()
    state = run_chain(sampler, state, chain.n_trajectories, hooks, stop=stop_rule.reason)
    checkpointer.write(state)
    problem = writer.close()
    if problem:
        warn(lattice.comm, f"{problem}; the file keeps spare rows after its records (see "
             "/committed), which lqcdflow's readers skip")
    if state.trajectory and state.accepted == 0:
        warn(lattice.comm, f"not one of the {state.trajectory} trajectories was accepted: the "
             "ensemble repeats its start configuration; lower the step size (more n_steps)")
    if stop_rule.why:
        stop_rule.report(f"stopped at trajectory {state.trajectory} ({stop_rule.why}); "
                         f"checkpoint written, exit code {EXIT_RESUBMIT}: resubmit to continue",
                         say)
        return EXIT_RESUBMIT, state
    return 0, state
