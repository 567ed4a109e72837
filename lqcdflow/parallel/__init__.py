"""Domain decomposition of periodic lattices over MPI ranks."""

from lqcdflow.parallel.grid import GridError, choose_grid
from lqcdflow.parallel.lattice import Lattice

__all__ = ["GridError", "Lattice", "choose_grid"]
