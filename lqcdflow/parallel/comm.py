"""MPI start-up and the rule that an error on one rank ends the whole job."""

import sys
import traceback

from mpi4py import MPI


def world():
    """The world communicator (MPI is initialised by importing mpi4py)."""
    return MPI.COMM_WORLD


def abort_on_error(exc: BaseException, comm=None) -> None:
    """Print ``exc`` with its traceback and the rank, then abort every rank of the job.

    Without this, the other ranks would wait forever in their next collective call.
    """
    comm = comm or MPI.COMM_WORLD
    text = "".join(traceback.format_exception(exc))
    sys.stderr.write(f"[rank {comm.Get_rank()}/{comm.Get_size()}] {text}")
    sys.stderr.flush()
    comm.Abort(1)
