"""Domain decomposition of periodic lattices over MPI ranks."""

from lqcdflow.parallel.grid import GridError, choose_grid

__all__ = ["GridError", "Lattice", "choose_grid"]


def __getattr__(name):
    # Lattice is imported on first use: importing mpi4py initialises MPI, and the serial
    # commands (status, info, analyze) import lqcdflow.parallel.grid without wanting that.
    if name == "Lattice":
        from lqcdflow.parallel.lattice import Lattice

        return Lattice
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
