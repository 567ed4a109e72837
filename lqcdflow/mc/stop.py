"""When to stop a run early: on a signal, on a stop request, or before the walltime runs out.

Batch systems warn a job before killing it: Slurm with ``--signal=USR1@T`` (or SIGTERM at the
end), PBS with SIGTERM, a user with Ctrl-C (SIGINT). A user stops a chain for good with
``lqcdflow stop RUN.toml``, which writes the stop request file ``RUN.toml.stop``. On any of
these, or when the time left is less than the safety margin, the run finishes its current
trajectory, checkpoints and exits with EXIT_RESUBMIT. Rank 0 decides and broadcasts, so every
rank stops at the same trajectory whichever ranks received the signal.
"""

import getpass
import os
import signal
import socket
import sys
import time

from lqcdflow.exitcodes import EXIT_RESUBMIT

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)


class SetupInterrupted(BaseException):
    """A stop signal arrived while the run was still setting up (reading files, building the
    model): nothing needs saving, so the run ends at once (lqcdflow.parallel.comm.guarded).
    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it."""


def setup_interrupted_line(exc, where=""):
    """The line that says a run ended on SetupInterrupted ``exc`` (``where``: which rank)."""
    return (f"lqcdflow: stopped by {exc} during set-up{where}, before anything was written; "
            f"resubmit to run (exit code {EXIT_RESUBMIT})")


class StopSignals:
    """The stop signals' handlers for the whole life of a command that can stop early.

    Installed (as a context manager) before MPI starts and kept until the command returns, so
    that a signal at any instant (start-up, set-up, a trajectory, a checkpoint, the closing
    table) leaves a consistent chain instead of killing the process:

    - during set-up (until :meth:`setup_ends`) a signal raises SetupInterrupted at once:
      set-up (starting MPI, reading a large start configuration or checkpoint, building a
      model) can take minutes, interrupts blocking system calls, and writes nothing;
    - afterwards it only sets ``received`` (the StopRule stops after the current trajectory),
      and interrupted system calls are restarted, so that no write of HDF5 or MPI-IO in
      progress sees EINTR;
    - once the chain has ended, ``received`` is no longer asked: the signal changes nothing.
    """

    def __init__(self, early=()):
        self.received = None
        self._in_setup = True
        self._previous = {}
        self._early = tuple(early)

    def __enter__(self):
        """Install the handlers; a signal in ``early`` (noted before, see lqcdflow.__main__)
        acts as if it came now."""
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        if self._early:
            self._handle(self._early[0], None)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name
        if self._in_setup:
            self._in_setup = False  # once: a second signal must not interrupt the way out
            raise SetupInterrupted(self.received)

    def setup_ends(self):
        """From now on a signal only marks the run to stop after its current trajectory."""
        self._in_setup = False
        for sig in self._previous:
            signal.siginterrupt(sig, False)


def request_path(run_file):
    """The stop request file of the chain of ``run_file``: ``RUN_FILE.stop``, next to it.

    The batch job helpers (lqcdflow/jobs/common.sh) use the same name.
    """
    return f"{run_file}.stop"


def request_stop(run_file):
    """Write the stop request of ``run_file``'s chain (atomically: a new file replaces an
    older request, so that a run that started after the older one sees the new one).
    Returns its path."""
    path = request_path(run_file)
    text = (f"stop requested by lqcdflow stop at {time.strftime('%Y-%m-%dT%H:%M:%S%z')} "
            f"({getpass.getuser()}@{socket.gethostname()})\n")
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, path)
    return path


def request_identity(path):
    """(inode, modification time) of the stop request file ``path``, or None without one."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns


class StopRule:
    """Collective stop decision with walltime bookkeeping.

    Parameters
    ----------
    comm : mpi4py communicator
    signals : StopSignals, optional
        The installed handlers (None: signals are not watched, e.g. in a library call).
    request : str, optional
        The stop request file (:func:`request_path`); a request written after this rule was
        made stops the run. One that was there already is an old one: a stopped chain that
        is started again runs.
    walltime : float
        Seconds this job may run, counted from the rule's creation (0: no limit).
    margin : float
        Seconds to keep in reserve; 0 means automatic: 2 x (longest trajectory + longest
        checkpoint) seen so far, at least 10 s.
    clock : callable
        Seconds (monotonic).

    The stop condition with a walltime is elapsed + reserve() + longest trajectory > walltime:
    there is no time for one more trajectory and its checkpoint.
    """

    def __init__(self, comm, signals=None, request=None, walltime=0.0, margin=0.0,
                 clock=time.monotonic):
        self.comm, self.walltime, self.margin, self.clock = comm, walltime, margin, clock
        self.signals = signals if signals is not None else StopSignals()
        self.request = request
        self._old_request = None
        if request and comm.Get_rank() == 0:
            self._old_request = request_identity(request)
        self.start = clock()
        self.why = None
        self.longest_trajectory = 0.0
        self.longest_checkpoint = 0.0
        self._last = self.start

    def setup_ends(self):
        """From now on a signal only marks the run to stop after its current trajectory."""
        self.signals.setup_ends()

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
            if self.signals.received:
                why = f"signal {self.signals.received}"
            elif self.request and request_identity(self.request) not in (None,
                                                                         self._old_request):
                why = f"stop requested in {self.request}"
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
