"""Whether the processes of this job were started as one MPI job.

A launcher that does not speak the MPI library's process-management interface (``srun
--mpi=none``, a PMI mismatch) starts N independent one-rank copies instead of one N-rank job:
each is rank 0 of its own MPI_COMM_WORLD and runs the whole chain, all writing the same files.
Slurm says how many tasks it started for the step (``SLURM_STEP_NUM_TASKS``); fewer ranks in
MPI_COMM_WORLD than that can only mean such copies. (More is normal: MPICH's Hydra starts one
Slurm task per node, a proxy, which starts the node's ranks.)
"""

import os

from lqcdflow.parallel.grid import GridError


def check(comm, environ=os.environ):
    """GridError (one line) if the scheduler started more tasks than ``comm`` has ranks."""
    tasks = environ.get("SLURM_STEP_NUM_TASKS", "")
    if tasks.isdigit() and int(tasks) > comm.Get_size():
        raise GridError(f"Slurm started {tasks} tasks (SLURM_STEP_NUM_TASKS) but this MPI job "
                        f"has {comm.Get_size()} rank(s): the launcher started separate copies, "
                        "not one MPI job; use srun --mpi=pmi2 (or pmix, whichever MPI was built "
                        "with) or mpiexec")
