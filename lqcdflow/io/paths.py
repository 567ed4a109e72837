"""The paths a command will write, checked before it writes anything.

A wrong path found after ``every`` trajectories costs the compute time spent and may leave
files behind that block the corrected rerun. So before it takes its locks or makes a file, a
command checks, on rank 0, that every file or directory it will write

- is not a directory where a file is written, nor a file where a directory is;
- lies in an existing directory (files) or under one (directories, made with their parents);
- can be written: a real probe (an anonymous temporary file in the directory that will hold
  it; the file itself opened for writing, unchanged), since ``os.access`` says yes to root on
  read-only mounts;
- is none of the files the command reads (the run file, a start configuration, ...) and none
  of the others it writes (two names of one file count as one: ``os.path.samefile``).

The probes create nothing that outlives them.
"""

import os
import tempfile

from lqcdflow.io.ensemble import OutputError


def _same(a, b):
    """Whether paths ``a`` and ``b`` name one file or directory (or would, once made)."""
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def _probe_directory(directory):
    """None if a file can be made in ``directory``, else the reason (a few words)."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            return None
    except OSError as e:
        return e.strerror or str(e)


def _existing_ancestor(path):
    """The nearest existing directory above ``path`` (or path itself), or the first existing
    ancestor that is not a directory."""
    here = os.path.abspath(path)
    while not os.path.exists(here):
        here = os.path.dirname(here)
    return here


def _write_problem(path, what, kind):
    """Why ``path`` (a "file" or a "directory" the command writes) cannot be written, or
    None."""
    if kind == "file":
        if os.path.isdir(path):
            return f"{what} {path} is a directory"
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            return f"the directory {parent} of {what} {path} does not exist"
        if os.path.exists(path):
            try:
                os.close(os.open(path, os.O_WRONLY))
            except OSError as e:
                return f"cannot write {what} {path}: {e.strerror}"
        where = parent
    else:
        if os.path.exists(path) and not os.path.isdir(path):
            return f"{what} {path} is a file, not a directory"
        where = _existing_ancestor(path)
        if not os.path.isdir(where):
            return f"cannot make {what} {path}: {where} is a file"
    reason = _probe_directory(where)
    if reason:
        return f"cannot write {what} {path}: {reason} in {where}"
    return None


def problem(writes, reads=()):
    """Why the command cannot write its paths, or None (serial; see the module docstring).

    Parameters
    ----------
    writes : sequence of (path, what, kind)
        What the command writes: ``what`` names it in messages ("output file"), ``kind`` is
        "file" or "directory". Empty paths (an optional file not written) are skipped.
    reads : sequence of (path, what)
        Files the command reads, which it must not write.
    """
    writes = [(path, what, kind) for path, what, kind in writes if path]
    for path, what, kind in writes:
        message = _write_problem(path, what, kind)
        if message:
            return message
    for i, (path, what, _) in enumerate(writes):
        for other, other_what in [(p, w) for p, w, _ in writes[:i]] + list(reads):
            if other and _same(path, other):
                return f"{what} {path} is also the {other_what}; give each its own path"
    return None


def check(comm, writes, reads=()):
    """Raise OutputError on every rank of ``comm`` if :func:`problem` finds one (rank 0
    checks, the others learn its answer)."""
    message = comm.bcast(problem(writes, reads) if comm.Get_rank() == 0 else None, root=0)
    if message:
        raise OutputError(message)
