"""phi^4's force terms as its fused kernels take them (Numba: lqcdflow.kernels.phi4_numba;
CUDA C: lqcdflow.kernels.phi4_cuda): the terms' codes, and the couplings' constants rounded to
the field's dtype, as NumPy rounds a Python float operand."""

import numpy as np

HOPPING, POTENTIAL = 1, 2  # bits of a force term
TERMS = {"action": HOPPING | POTENTIAL, "hopping": HOPPING, "potential": POTENTIAL}


def constants(couplings, dtype):
    """(-h, 4 c4, 2 c2) of :class:`lqcdflow.theories.phi4.Phi4Couplings` in ``dtype``."""
    real = np.dtype(dtype).type
    return real(-couplings.h), real(4.0 * couplings.c4), real(2.0 * couplings.c2)
