"""Shared fixtures. Tests marked ``mpi`` run under ``mpiexec -n N python -m pytest --with-mpi``
on every rank (and serially with N = 1); all others run serially only."""

import subprocess
import sys

import pytest
from mpi4py import MPI


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that fails on one rank of several aborts them all: the other ranks may be waiting
    for it in a collective call, and would hang until the run's timeout."""
    outcome = yield
    report = outcome.get_result()
    world = MPI.COMM_WORLD
    if report.failed and world.Get_size() > 1:
        sys.stderr.write(f"[rank {world.Get_rank()}/{world.Get_size()}] {report.nodeid} failed "
                         f"({report.when}), aborting all ranks:\n{report.longreprtext}\n")
        sys.stderr.flush()
        world.Abort(1)


@pytest.fixture
def comm():
    return MPI.COMM_WORLD


@pytest.fixture
def shared_tmp_path(tmp_path, comm):
    """A temporary directory that is the same on all ranks (rank 0's)."""
    return comm.bcast(tmp_path if comm.Get_rank() == 0 else None, root=0)


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size) -> a directory on a fresh tmpfs of ``size`` (e.g. "160k"): a disk that
    fills up; unmounted when the test ends. Skips where mounting is not allowed."""
    mounted = []

    def mount(size):
        mount_point = tmp_path / f"tmpfs{len(mounted)}"
        mount_point.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                                 str(mount_point)], capture_output=True, text=True)
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs (needs root): {result.stderr.strip()}")
        mounted.append(mount_point)
        return mount_point

    yield mount
    for mount_point in mounted:
        subprocess.run(["umount", str(mount_point)], check=True)
