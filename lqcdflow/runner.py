"""A production HMC run: start or continue a chain, measure, save, checkpoint, stop in time.

The run is a loop of trajectories (lqcdflow.mc.driver.run_chain) with hooks that record
observables, save configurations, write checkpoints and print progress. It continues from the
newest valid checkpoint when there is one (``restart = "auto"``), on any number of ranks, and
stops early, with a checkpoint, on a signal or before the walltime (exit code EXIT_RESUBMIT).
"""

import os
import sys
import time

import numpy as np

from lqcdflow import build
from lqcdflow.config import ConfigError
from lqcdflow.io import checkpoint
from lqcdflow.io.configurations import ConfigurationWriter
from lqcdflow.io.ensemble import EnsembleWriter, run_attributes
from lqcdflow.mc.driver import Measure, Progress, run_chain
from lqcdflow.mc.hmc import ChainState
from lqcdflow.mc.stop import EXIT_RESUBMIT


def _say_error(comm, text):
    if comm.Get_rank() == 0:
        print(f"lqcdflow: warning: {text}", file=sys.stderr, flush=True)


def newest_valid_checkpoint(config, lattice):
    """(field, attrs) of the newest checkpoint that verifies, or None if there are none.

    Corrupt or truncated checkpoints are skipped with a warning naming them. Raises
    CheckpointError if checkpoints exist but none is valid, and ConfigError if the newest
    valid one belongs to a different run (lattice, theory, seed or precision).
    """
    directory = config["checkpoint"]["directory"]
    paths = lattice.comm.bcast(checkpoint.list_checkpoints(directory)
                               if lattice.rank == 0 else None, root=0)
    for path in paths:
        try:
            phi, attrs = checkpoint.load(path, lattice)
        except checkpoint.CheckpointError as e:
            _say_error(lattice.comm, f"skipping checkpoint {e}")
            continue
        for key, wanted in checkpoint.identity(config).items():
            if np.asarray(attrs[key]).tolist() != np.asarray(wanted).tolist():
                raise ConfigError(f"checkpoint {path} belongs to another run: {key} = "
                                  f"{np.asarray(attrs[key]).tolist()!r} there, {wanted!r} in "
                                  "the run file")
        return phi, attrs
    if paths:
        raise checkpoint.CheckpointError(f"no valid checkpoint in {directory}")
    return None


class Checkpointer:
    """Hook: commit the output and write a checkpoint every ``every`` trajectories."""

    def __init__(self, config, lattice, writer, configurations, stop_rule):
        self.config, self.lattice = config, lattice
        self.writer, self.configurations, self.stop_rule = writer, configurations, stop_rule
        self.every = config["checkpoint"]["every"]
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
                 if self.configurations else 0}
        ck = self.config["checkpoint"]
        checkpoint.save(ck["directory"], self.lattice, state, self.config, extra, ck["keep"])
        self.stop_rule.checkpoint_took(time.monotonic() - start)
        self.last = state.trajectory


def _clear_old_checkpoints(config, lattice):
    """A fresh run must not mix with checkpoints of an earlier one (removed only on overwrite)."""
    directory = config["checkpoint"]["directory"]
    old = lattice.comm.bcast(checkpoint.list_checkpoints(directory)
                             if lattice.rank == 0 else None, root=0)
    if not old:
        return
    if not config["output"]["overwrite"]:
        raise ConfigError(f"checkpoint directory {directory} holds checkpoints of an earlier "
                          'run; use [checkpoint] restart = "auto", another directory, or '
                          "[output] overwrite = true")
    if lattice.rank == 0:
        for path in old:
            os.remove(path)


def run_ensemble(config, run_file_text, comm, stop_rule, say=None):
    """Generate (or continue) the ensemble the run file describes; returns the exit code.

    ``stop_rule`` (a StopRule whose signal handlers are installed) decides when to stop early.
    0: n_trajectories reached; EXIT_RESUBMIT: stopped early with a checkpoint.
    """
    lattice = build.make_lattice(config, comm)
    action = build.make_action(config, lattice)
    hmc = build.make_hmc(config, action)
    out, ck, sampler = config["output"], config["checkpoint"], config["sampler"]
    stop_rule.walltime, stop_rule.margin = ck["walltime"], ck["margin"]
    attrs = run_attributes(config, lattice, run_file_text)

    found = newest_valid_checkpoint(config, lattice) if ck["restart"] == "auto" else None
    if found is None:
        _clear_old_checkpoints(config, lattice)
        state = build.make_initial_state(config, lattice)
        resume = {"mc": None, "configurations": None}
    else:
        phi, ck_attrs = found
        state = ChainState(phi, int(ck_attrs["trajectory"]), int(ck_attrs["accepted"]))
        resume = {"mc": {"mc": int(ck_attrs["output.mc"]),
                         "observables": int(ck_attrs["output.observables"])},
                  "configurations": int(ck_attrs["output.configurations"])}
        if say:
            say(f"continuing from checkpoint at trajectory {state.trajectory}")
    writer = EnsembleWriter(out["file"], attrs, lattice.shape[0], comm,
                            overwrite=out["overwrite"], resume=resume["mc"])
    configurations = None
    if out["configurations"]:
        configurations = ConfigurationWriter(out["configurations"], lattice, attrs,
                                             out["save_every"], overwrite=out["overwrite"],
                                             resume=resume["configurations"])
    if say:
        say(f"integrator {hmc.scheme.describe(1)}, {hmc.n_steps} steps of "
            f"{hmc.step_size:.6g}, {hmc.scheme.force_evaluations(hmc.n_steps)} forces/traj")

    checkpointer = Checkpointer(config, lattice, writer, configurations, stop_rule)
    hooks = [Measure(action, writer, sampler["measure_every"])]
    if configurations:
        hooks.append(lambda s, info: configurations.save(s))
    hooks += [stop_rule.trajectory_done, checkpointer,
              Progress(writer, out["progress_every"], state.trajectory,
                       sampler["n_trajectories"], print_fn=say)]
    stop_rule.loop_starts()
    state = run_chain(hmc, state, sampler["n_trajectories"], hooks, stop=stop_rule.reason)
    checkpointer.write(state)
    if stop_rule.why:
        if say:
            say(f"stopped at trajectory {state.trajectory} ({stop_rule.why}); checkpoint "
                f"written, exit code {EXIT_RESUBMIT}: resubmit to continue")
        return EXIT_RESUBMIT
    return 0
