"""File-system helpers for writing data safely."""

import os
import re
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


# What h5py and NumPy raise on a damaged HDF5 file besides OSError: KeyError for an object
# whose link is garbage, RuntimeError ("Object visitation failed", "bad version number for
# datatype message"), ValueError and TypeError for garbage shapes, dtypes and attribute values,
# MemoryError for a garbage shape of petabytes. A reader catches these around what it reads
# from a file, after its own errors.
READ_ERRORS = (OSError, KeyError, RuntimeError, ValueError, TypeError, MemoryError)

_HDF5_REASONS = (
    # (words in h5py's message, what they mean to a user)
    ("file signature not found", "not an HDF5 file"),
    ("no such file or directory", "not found"),
    ("permission denied", "permission denied"),
    ("is a directory", "is a directory"),
)
_MISSING = ((re.compile(r"object '([^']+)' doesn't exist"), "it holds no {}"),
            (re.compile(r"attribute: '([^']+)'"), "it has no attribute {}"))
_TRUNCATED = re.compile(r"truncated file: eof = (\d+).*stored_eof = (\d+)")


def reason(error):
    """Why a file could not be opened or read, in a few plain words, from an OSError (or a
    KeyError) of h5py or the OS: e.g. "truncated: 13440 of 26880 bytes" for h5py's
    "Unable to synchronously open file (truncated file: eof = 13440, sblock->base_addr = 0,
    stored_eof = 26880)", "not an HDF5 file", or the first line of any other message.

    >>> reason(OSError("Unable to open file (truncated file: eof = 10, sblock->base_addr = 0, "
    ...                "stored_eof = 20)"))
    'truncated: 10 of 20 bytes'
    """
    text = str(error)
    found = _TRUNCATED.search(text)
    if found:
        return f"truncated: {found.group(1)} of {found.group(2)} bytes"
    lowered = text.lower()
    for words, meaning in _HDF5_REASONS:
        if words in lowered:
            return meaning
    for pattern, template in _MISSING:
        found = pattern.search(text)
        if found:
            return template.format(found.group(1))
    return getattr(error, "strerror", None) or (text.splitlines() or [type(error).__name__])[0]
