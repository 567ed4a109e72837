"""Reading a possibly damaged HDF5 file in a forked child, so that libhdf5 cannot take the
command down with it.

libhdf5 trusts its own metadata: a damaged object header or attribute message can make it
crash (a segmentation fault in ``H5A__close`` while iterating attributes, a glibc heap
assertion, with HDF5 1.10) or loop forever rather than return an error, and no Python code
can catch that, in the reading call or later. The serial commands (``info``, ``analyze``,
``status``) therefore read each file with :func:`isolated`: a forked child does the reading,
with its own output silenced, and sends back what it read (or the exception it raised); if it
dies of a signal or is still at it after a time no honest read can take (``TIMEOUT`` seconds
plus the file's size at ``SLOWEST_READ`` bytes per second), :class:`LibraryCrash` says so and
the command itself has never touched the file.

The MPI commands do not fork (forking an MPI process is unsafe with some transports); there a
file damaged this way crashes rank 0 while reading it, which aborts the job before it writes
anything.
"""

import faulthandler
import os
import pickle
import signal
import time

TIMEOUT = 60.0  # seconds: opening a file and reading its metadata takes far less
SLOWEST_READ = 20e6  # bytes per second: slower than any parallel file system serves one reader


class LibraryCrash(RuntimeError):
    """The child reading a file died of a signal or did not finish (the message says which)."""


def _child(write, function, args):
    """Run in the forked child: send back ("ok", result) or ("error", exception), and exit."""
    try:
        faulthandler.disable()  # its report of a crash would reach the caller's stderr
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 2)
        try:
            message = pickle.dumps(("ok", function(*args)))
        except Exception as e:  # the caller's to handle, as if raised in-process
            try:
                message = pickle.dumps(("error", e))
            except Exception:  # an exception that does not pickle: its text does
                message = pickle.dumps(("error", RuntimeError(str(e))))
        with os.fdopen(write, "wb") as pipe:
            pipe.write(message)
    finally:
        os._exit(0)


def isolated(function, path, *args):
    """``function(path, *args)`` run in a forked child: its return value, or the exception it
    raised (raised again here); LibraryCrash if the child died or ran past its time (see the
    module docstring) to read the file ``path``.

    Return values and exceptions travel pickled, so they must be picklable (arrays, dicts,
    dataclasses, lqcdflow's one-line errors).
    """
    try:
        seconds = TIMEOUT + os.path.getsize(path) / SLOWEST_READ
    except OSError:  # the function will say what is wrong with the path
        seconds = TIMEOUT
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        _child(write, function, (path, *args))
    os.close(write)
    chunks, deadline = [], time.monotonic() + seconds
    with os.fdopen(read, "rb") as pipe:
        os.set_blocking(read, False)
        while True:
            chunk = pipe.read()  # None while the pipe is empty
            if chunk:
                chunks.append(chunk)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                chunks.append(pipe.read() or b"")
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise LibraryCrash(f"the HDF5 library did not finish reading it in "
                                   f"{seconds:.0f} s: its HDF5 metadata is damaged")
            time.sleep(0.002)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise LibraryCrash(f"the HDF5 library crashed ({name}) reading it: its HDF5 metadata "
                           "is damaged")
    if not any(chunks):
        raise LibraryCrash("the process reading it ended without an answer")
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "error":
        raise value
    return value
