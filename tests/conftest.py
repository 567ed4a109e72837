"""Shared fixtures. Tests marked ``mpi`` run under ``mpiexec -n N python -m pytest --with-mpi``
on every rank (and serially with N = 1); all others run serially only."""

import pytest
from mpi4py import MPI


@pytest.fixture
def comm():
    return MPI.COMM_WORLD


@pytest.fixture
def shared_tmp_path(tmp_path, comm):
    """A temporary directory that is the same on all ranks (rank 0's)."""
    return comm.bcast(tmp_path if comm.Get_rank() == 0 else None, root=0)
