"""When to stop a run early: on a signal or before the batch job's walltime runs out.

Batch systems warn a job before killing it: Slurm with ``--signal=USR1@T`` (or SIGTERM at the
end), PBS with SIGTERM, a user with Ctrl-C (SIGINT). On any of these, or when the time left
is less than the safety margin, the run finishes its current trajectory, checkpoints and exits
with EXIT_RESUBMIT. Rank 0 decides and broadcasts, so every rank stops at the same trajectory
whichever ranks received the signal.
"""

import signal
import sys
import time

from lqcdflow.exitcodes import EXIT_RESUBMIT  # noqa: F401  (part of this module's interface)

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)


class SetupInterrupted(BaseException):
    """A stop signal arrived while the run was still setting up (reading files, building the
    model): nothing needs saving, so the run ends at once (lqcdflow.parallel.comm.guarded).
    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it."""


class StopRule:
    """Collective stop decision with walltime bookkeeping.

    Parameters
    ----------
    comm : mpi4py communicator
    walltime : float
        Seconds this job may run, counted from the rule's creation (0: no limit).
    margin : float
        Seconds to keep in reserve; 0 means automatic: 2 x (longest trajectory + longest
        checkpoint) seen so far, at least 10 s.
    clock : callable
        Seconds (monotonic).

    The stop condition with a walltime is elapsed + reserve() + longest trajectory > walltime:
    there is no time for one more trajectory and its checkpoint.

    Until :meth:`setup_ends` (or :meth:`loop_starts`), a stop signal raises SetupInterrupted
    at once: set-up (reading a large start configuration or checkpoint, building a model) can
    take minutes, and nothing of it needs saving. The run must end set-up before it writes
    anything that a half-done operation could leave inconsistent.
    """

    def __init__(self, comm, walltime=0.0, margin=0.0, clock=time.monotonic):
        self.comm, self.walltime, self.margin, self.clock = comm, walltime, margin, clock
        self.start = clock()
        self.received = None
        self.why = None
        self.longest_trajectory = 0.0
        self.longest_checkpoint = 0.0
        self._last = self.start
        self._previous = {}
        self._in_setup = True

    def __enter__(self):
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name
        if self._in_setup:
            raise SetupInterrupted(self.received)

    def setup_ends(self):
        """From now on a signal only marks the run to stop after its current trajectory."""
        self._in_setup = False

    def loop_starts(self):
        """Start timing trajectories (start-up time is not a trajectory's); set-up ends."""
        self.setup_ends()
        self._last = self.clock()

    def trajectory_done(self, state, info):
        """Hook: time the trajectory that just finished."""
        now = self.clock()
        self.longest_trajectory = max(self.longest_trajectory, now - self._last)
        self._last = now

    def checkpoint_took(self, seconds):
        self.longest_checkpoint = max(self.longest_checkpoint, seconds)
        self._last = self.clock()

    def reserve(self):
        """Seconds kept free before the walltime."""
        if self.margin > 0:
            return self.margin
        return max(10.0, 2 * (self.longest_trajectory + self.longest_checkpoint))

    def reason(self):
        """Why to stop now (rank 0's view, broadcast; also kept as ``why``), or None."""
        why = None
        if self.comm.Get_rank() == 0:
            if self.received:
                why = f"signal {self.received}"
            elif self.walltime > 0:
                elapsed = self.clock() - self.start
                if elapsed + self.reserve() + self.longest_trajectory > self.walltime:
                    why = (f"walltime: {elapsed:.0f} s of {self.walltime:.0f} s used, "
                           f"{self.reserve():.0f} s reserved")
        self.why = self.comm.bcast(why, root=0)
        return self.why

    def report(self, text, say=None):
        """Say why the run stopped (rank 0): ``text`` through ``say``, or on stderr when the
        run is quiet (``say`` None), so that a batch log always tells why a job ended early."""
        if self.comm.Get_rank() != 0:
            return
        if say:
            say(text)
        else:
            print(f"lqcdflow: {text}", file=sys.stderr, flush=True)
