"""File-system helpers for writing data safely."""

import os
import shutil
from contextlib import contextmanager


def fsync(path):
    """Flush a file's (or a directory's) data and metadata to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replaced_atomically(path):
    """Yield a temporary path next to ``path`` to write; if the block succeeds, fsync it,
    rename it over ``path`` and fsync the directory. The temporary never survives the block,
    so ``path`` is always either the old or the new complete file.
    """
    temporary = path + ".tmp"
    try:
        yield temporary
        fsync(temporary)
        os.replace(temporary, path)
        fsync(os.path.dirname(os.path.abspath(path)))
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def free_space_problem(directory, nbytes, what):
    """A message if ``directory`` has less than ``nbytes`` (+ 64 KiB for HDF5 metadata) free.

    Checked by rank 0 before collective writes: a disk that fills up in the middle of
    collective MPI-IO can leave ranks waiting for each other, so it is refused beforehand.
    """
    try:
        free = shutil.disk_usage(directory).free
    except OSError as e:
        return f"cannot write {what} in {directory}: {e.strerror}"
    if free < nbytes + 2**16:
        return (f"cannot write {what}: {nbytes + 2**16} bytes needed, {free} free "
                f"on {os.path.abspath(directory)}")
    return None
