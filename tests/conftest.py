"""Shared fixtures. Tests marked ``mpi`` run under ``mpiexec -n N python -m pytest --with-mpi``
on every rank (and serially with N = 1); all others run serially only."""

import subprocess

import pytest
from mpi4py import MPI


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
