"""``python -m lqcdflow`` and the ``lqcdflow`` command (the entry point in setup.cfg).

Before anything heavy is imported, the stop signals are only noted: starting NumPy, h5py and
MPI takes a good part of a second, and a batch system's signal then must let lqcdflow stop in
order (lqcdflow.cli.main acts on it) instead of killing one rank of an MPI job, which would
leave the others waiting for it.
"""

import signal

from lqcdflow.mc.stop import STOP_SIGNALS


def main(argv=None):
    """Run the lqcdflow command line; returns its exit code."""
    early, inherited = [], {}
    for sig in STOP_SIGNALS:
        inherited[sig] = signal.signal(sig, lambda signum, frame: early.append(signum))
    from lqcdflow.cli import main as command

    return command(argv, early, inherited)


if __name__ == "__main__":
    raise SystemExit(main())
