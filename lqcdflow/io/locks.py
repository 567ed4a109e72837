"""One writer per chain: locks on the files and directories a run writes.

Two processes writing one ensemble, checkpoint directory or flow state would interleave their
records (a chain with a trajectory missing or twice, that every checksum still calls whole).
Before it touches anything, a run takes an exclusive POSIX record lock (``fcntl.lockf``, which
works across NFS and Lustre clients where ``flock`` may not) on ``PATH.lock`` beside each path
it will write, on rank 0, and keeps it until it ends. The kernel releases the locks of a
process that dies, however it dies, so a killed job never leaves a stale lock behind; the
``.lock`` files themselves stay (removing them would let a third process lock a new file while
a second still holds the old one). Each lock file names its holder (host, process id, start
time, command), which the refusal of a second run quotes.
"""

import errno
import fcntl
import os
import socket
import sys
import time

from lqcdflow.io.ensemble import OutputError


class LockError(OutputError):
    """A path is being written by another process, or its lock cannot be made (one line)."""


def lock_path(path):
    """The lock file of ``path`` (a file or a directory): ``PATH.lock`` beside it."""
    return os.path.normpath(path) + ".lock"


def _holder():
    return (f"pid {os.getpid()} on {socket.gethostname()}, started "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(sys.argv)}")


class WriterLock:
    """Exclusive locks on the ``(path, what)`` pairs ``targets`` for as long as the context
    lasts (collective over ``comm``: rank 0 locks, every rank raises LockError alike).

    ``what`` names the path in messages ("output file", "checkpoint directory", ...); empty
    paths are skipped. A "directory" is made (with its parents) before it is locked, as the
    run would make it anyway.
    """

    def __init__(self, comm, targets):
        self.comm = comm
        self.targets = [(path, what) for path, what in targets if path]
        self._fds = []

    def __enter__(self):
        problem = self._acquire() if self.comm.Get_rank() == 0 else None
        problem = self.comm.bcast(problem, root=0)
        if problem:
            self._release()
            raise LockError(problem)
        return self

    def __exit__(self, *exc):
        self._release()

    def _acquire(self):
        """None when every target is locked, else why not (a line)."""
        for path, what in self.targets:
            lock = lock_path(path)
            try:
                if what.endswith("directory"):
                    os.makedirs(path, exist_ok=True)
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                return f"cannot create {what} {path}: {e.strerror} (making its lock file {lock})"
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                if e.errno in (errno.EACCES, errno.EAGAIN):
                    return (f"{what} {path} is being written by another lqcdflow process "
                            f"({holder}); one chain has one writer: wait for that run to end "
                            "or stop it")
                return f"cannot lock {what} {path}: {e.strerror} ({lock})"
            os.ftruncate(fd, 0)
            os.pwrite(fd, (_holder() + "\n").encode(), 0)
            self._fds.append(fd)
        return None

    def _release(self):
        for fd in self._fds:
            os.close(fd)  # releases the lock; the file stays (module docstring)
        self._fds = []
