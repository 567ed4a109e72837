"""phi^4's force terms as its fused kernels take them (Numba: lqcdflow.kernels.phi4_numba;
CUDA C: lqcdflow.kernels.phi4_cuda): the terms' codes, the couplings' constants rounded to
the field's dtype, as NumPy rounds a Python float operand, and the faces a term reads."""

import numpy as np

HOPPING, POTENTIAL = 1, 2  # bits of a force term
TERMS = {"action": HOPPING | POTENTIAL, "hopping": HOPPING, "potential": POTENTIAL}
SIGNS = (1, -1)  # the hopping term's faces: beyond the block in +e_mu and -e_mu


def constants(couplings, dtype):
    """(-h, 4 c4, 2 c2) of :class:`lqcdflow.theories.phi4.Phi4Couplings` in ``dtype``."""
    real = np.dtype(dtype).type
    return real(-couplings.h), real(4.0 * couplings.c4), real(2.0 * couplings.c2)


def term_halo(md, field, term):
    """(halo, offsets) of ``md``'s FusedMD.halo for force term ``term``: the faces in +-e_mu,
    or an empty halo for the potential alone, which reads no neighbours (no exchange: on a GPU
    without CUDA-aware MPI each goes through the host)."""
    if term == POTENTIAL:
        return field.reshape(-1)[:0], np.zeros((md.lattice.ndim, len(SIGNS)), np.int64)
    return md.halo(field, SIGNS)
