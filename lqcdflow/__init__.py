"""lqcdflow: lattice field theory on supercomputers (MPI domain decomposition, HMC, flows)."""

__version__ = "0.1.0"
