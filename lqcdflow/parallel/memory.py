"""The memory a run needs, checked against what its nodes (or GPUs) have, before allocating.

A lattice or model too large for the machine should be refused in a second with the numbers
(how many bytes are needed, how many are there, what to change), not after minutes of set-up
with a NumPy ``MemoryError``, or by the kernel's out-of-memory killer taking the whole job.

What is there:
- on CPUs, per node: ``MemAvailable`` of ``/proc/meminfo``, lowered to the cgroup v2 limit
  minus its usage where the job runs in one (Slurm confines jobs so), shared by the ranks on
  the node (``MPI_COMM_TYPE_SHARED``);
- on GPUs, per rank: the free memory of its device (one device per rank).

The needs are lower bounds from each sampler's arrays (see the estimates where they are
made), so a refusal is certain; a run that passes may still need somewhat more.
"""

import os

from lqcdflow.config import ConfigError

_GIB = 2**30


def _meminfo_available():
    """MemAvailable in bytes, or None where /proc/meminfo does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cgroup_available(root="/sys/fs/cgroup"):
    """memory.max - memory.current of this process's cgroup (v2), or None if unlimited or
    unknown."""
    try:
        with open("/proc/self/cgroup") as f:
            path = next((line.split("::", 1)[1].strip() for line in f
                         if line.startswith("0::")), "/")
        directory = os.path.join(root, path.lstrip("/"))
        with open(os.path.join(directory, "memory.max")) as f:
            limit = f.read().strip()
        with open(os.path.join(directory, "memory.current")) as f:
            current = int(f.read())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(int(limit) - current, 0)


def node_available_bytes():
    """Bytes the processes of this node can still allocate (None if unknown)."""
    known = [b for b in (_meminfo_available(), _cgroup_available()) if b is not None]
    return min(known) if known else None


def device_available_bytes():
    """Free bytes of this rank's GPU."""
    import cupy

    return cupy.cuda.runtime.memGetInfo()[0]


def check(lattice, needed, what, available=None):
    """Raise ConfigError on every rank of ``lattice`` if ``needed`` bytes per rank do not fit.

    Collective. On CPUs the ranks of one node share its memory: they need ``needed`` times
    their number; on GPUs (the lattice's backend) each rank has its device. ``what`` says what
    needs the bytes ("HMC of su3"; the message adds the lattice and the ranks); ``available``
    (bytes per node or device) replaces the measurement, for tests.
    """
    from mpi4py import MPI

    comm, on_gpu = lattice.comm, lattice.backend.on_gpu
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    sharing = 1 if on_gpu else node.Get_size()
    node.Free()
    if available is None:
        available = device_available_bytes() if on_gpu else node_available_bytes()
    problem = None
    if available is not None and needed * sharing > available:
        where = ("free on its GPU" if on_gpu
                 else f"available on its node, shared by {sharing} rank(s)")
        problem = (f"{what} on a {'x'.join(map(str, lattice.shape))} lattice over "
                   f"{lattice.size} rank(s) needs at least {needed / _GIB:.3g} GiB per rank, "
                   f"{available / _GIB:.3g} GiB are {where}; use more nodes (ranks) or a "
                   "smaller lattice")
    problem = next((p for p in comm.allgather(problem) if p), None)
    if problem:
        raise ConfigError(problem)
