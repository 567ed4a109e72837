"""The Monte Carlo loop: a sampler advances the chain, hooks measure, record and report."""

import math
import time

import numpy as np


class DivergenceError(ArithmeticError):
    """A chain (or a training) produced NaN: its numbers mean nothing from here on (one line)."""


def run_chain(sampler, state, n_trajectories, hooks=(), stop=None):
    """Advance ``state`` with ``sampler.step`` until ``n_trajectories`` trajectories are done.

    Each hook is called as ``hook(state, info)`` after every trajectory. ``stop()`` (optional,
    collective) is asked before every trajectory; a non-None answer ends the loop early.
    Returns the final state.

    A trajectory whose change of energy (``info.change()``: Delta H, or Delta S of a sweep)
    is not finite raises DivergenceError before any hook records it (it is a global sum, so
    every rank raises alike): an energy beyond the float range means the update has diverged
    (HMC: the molecular dynamics blew up; flows: a proposal of infinite action), and a chain
    that silently rejected it would go on as if nothing were wrong. Large finite Delta H
    (spikes) are ordinary rejections.
    """
    while state.trajectory < n_trajectories and not (stop and stop()):
        # overflow on the way to a non-finite Delta H is reported below, in one line
        with np.errstate(over="ignore", invalid="ignore"):
            state, info = sampler.step(state)
        label, change = info.change()
        if not math.isfinite(change):
            raise DivergenceError(
                f"trajectory {info.trajectory}: {label} = {change}: the update diverged "
                "(for HMC, lower the step size trajectory_length / n_steps); nothing of it "
                "was recorded, and a rerun continues from the last checkpoint, if any")
        for hook in hooks:
            hook(state, info)
    return state


class Measure:
    """Hook: record every trajectory, and measure the theory's observables every ``every``
    trajectories."""

    def __init__(self, theory, writer, every):
        self.theory, self.writer, self.every = theory, writer, every

    def __call__(self, state, info):
        self.writer.record_trajectory(info)
        if state.trajectory % self.every == 0:
            self.writer.record_measurement(state.trajectory, self.theory.measure(state.field))


class Progress:
    """Hook: every ``every`` trajectories commit the writer and print (rank 0) a progress line.

    trajectory, acceptance so far (``state.accepted`` / (trajectories x ``updates``, the
    accept/reject decisions per trajectory: 1 for HMC, one per site and hit for a sweep of
    local updates)), the change of energy of the last trajectory, seconds per trajectory
    (mean since the previous line) and the estimated time to finish. A chain that has not
    accepted a single trajectory yet says so on the line: its results would be those of the
    start configuration (usually a step size too large for the couplings, or a bad start).
    ``health()`` (optional) adds the theory's few words on its numerical health.
    """

    def __init__(self, writer, every, first_trajectory, n_trajectories, print_fn=None,
                 clock=time.monotonic, health=None, updates=1):
        self.writer, self.every, self.n_trajectories = writer, every, n_trajectories
        self.print_fn, self.clock, self.health = print_fn, clock, health
        self.updates = updates
        self.last_time, self.last_trajectory = clock(), first_trajectory

    def __call__(self, state, info):
        if state.trajectory % self.every and state.trajectory != self.n_trajectories:
            return
        self.writer.commit()
        now = self.clock()
        seconds = (now - self.last_time) / (state.trajectory - self.last_trajectory)
        self.last_time, self.last_trajectory = now, state.trajectory
        if self.print_fn:
            eta = seconds * (self.n_trajectories - state.trajectory)
            stuck = ("  WARNING: nothing accepted yet; lower the step size (more n_steps)"
                     if state.accepted == 0 else "")
            note = self.health() if self.health else ""
            acceptance = state.accepted / (state.trajectory * self.updates)
            label, change = info.change()  # "Delta H" -> "dH"
            self.print_fn(f"traj {state.trajectory:>7d}/{self.n_trajectories}  "
                          f"acc {acceptance:6.3f}  {label.replace('Delta ', 'd')} "
                          f"{change:+.3e}  {seconds:8.3f} s/traj  ETA {eta:8.0f} s"
                          + (f"  {note}" if note else "") + stuck)
