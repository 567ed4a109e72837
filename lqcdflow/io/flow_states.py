"""What marks a flow state file (lqcdflow.flows.state) and proves it intact, without torch.

A state file carries ``format = "lqcdflow-flow-state"`` and ``state_sha256``, the SHA-256 of
everything else it holds (:func:`lqcdflow.io.checksum.hdf5_sha256`), so that training and
sampling refuse a damaged file and ``lqcdflow info`` (which never imports torch) checks it.
"""

import h5py

from lqcdflow.io import probe
from lqcdflow.io.checksum import hdf5_sha256
from lqcdflow.io.ensemble import OutputError
from lqcdflow.io.files import READ_ERRORS, reason

FORMAT = "lqcdflow-flow-state"
HASH = "state_sha256"


def seal(file):
    """Store the hash of the open, completely written state ``file``."""
    file.attrs[HASH] = hdf5_sha256(file, skip=HASH)


def intact(file):
    """Whether the open state ``file`` holds what its hash says. Files written before the
    format was marked carry no hash; they pass."""
    if file.attrs.get("format") != FORMAT:
        return True
    return file.attrs.get(HASH) == hdf5_sha256(file, skip=HASH)


def trained_step(path):
    """The training step the state file at ``path`` holds, or None if there is no file; read
    in a child (lqcdflow.io.probe), serially. OutputError (one line) if it is unreadable or
    damaged."""
    try:
        problem, step = probe.isolated(_step_of, path)
    except probe.LibraryCrash as e:
        problem, step = str(e), None
    if problem:
        raise OutputError(f"flow state {path} is unreadable ({problem})")
    return step


def _step_of(path):
    """(problem or None, step or None) of the state file at ``path``."""
    try:
        with h5py.File(path, "r") as f:
            if not intact(f):
                return "checksum mismatch", None
            return None, int(f.attrs["step"])
    except FileNotFoundError:
        return None, None
    except READ_ERRORS as e:
        return reason(e), None
