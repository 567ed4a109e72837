"""The rule that an error on one rank ends the whole MPI job instead of hanging it."""

import sys
import traceback

from mpi4py import MPI

from lqcdflow.exitcodes import EXIT_RESUBMIT, EXIT_USAGE, error_line
from lqcdflow.mc.stop import SetupInterrupted, setup_interrupted_line


def abort_on_error(exc: BaseException, comm) -> None:
    """Print ``exc`` with its traceback and the rank, then abort every rank of the job.

    Without this, the other ranks would wait forever in their next collective call.
    """
    text = "".join(traceback.format_exception(exc))
    sys.stderr.write(f"[rank {comm.Get_rank()}/{comm.Get_size()}] {text}")
    sys.stderr.flush()
    comm.Abort(1)


def guarded(work, comm=None, user_errors=()):
    """Run ``work()`` so that no failure can leave ranks waiting for each other.

    - An exception of a type in ``user_errors`` (raised on every rank alike, e.g. a bad run
      file) prints ``lqcdflow: error: <message>`` once (rank 0) and returns exit code 2.
    - A stop signal during set-up (SetupInterrupted) prints one line and returns
      EXIT_RESUBMIT, or aborts all ranks with that code when there are several.
    - Any other exception on any rank prints its traceback and aborts all ranks (MPI_Abort);
      on a single rank it propagates as usual.

    Returns ``work()``'s return value (the exit code) otherwise.
    """
    comm = comm if comm is not None else MPI.COMM_WORLD
    try:
        return work()
    except user_errors as e:
        if comm.Get_rank() == 0:
            print(error_line(e), file=sys.stderr)
        return EXIT_USAGE
    except SetupInterrupted as e:
        where = f" (rank {comm.Get_rank()} of {comm.Get_size()})" if comm.Get_size() > 1 else ""
        print(setup_interrupted_line(e, where), file=sys.stderr, flush=True)
        if comm.Get_size() > 1:
            comm.Abort(EXIT_RESUBMIT)  # the other ranks may wait in a collective call
        return EXIT_RESUBMIT
    except BaseException as e:
        if comm.Get_size() > 1 and not isinstance(e, SystemExit):
            abort_on_error(e, comm)
        raise
