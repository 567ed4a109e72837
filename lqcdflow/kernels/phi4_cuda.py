"""phi^4 molecular dynamics with the CUDA C kernels of lqcdflow/kernels/cuda/phi4.cu (the
formulas: lqcdflow.kernels.phi4_numba), on a GPU through CuPy, or on the host
(lqcdflow.kernels.device), bitwise equal to the NumPy path. Each update is one kernel over the
sites; for the hopping term the faces of split directions are exchanged first and packed into
one halo array (the potential alone needs none: on a GPU without CUDA-aware MPI each exchange
goes through the host).
"""

import numpy as np

from lqcdflow.kernels.device import DeviceMD
from lqcdflow.kernels.phi4_terms import HOPPING, POTENTIAL, SIGNS, TERMS, constants, \
    term_halo


def make(theory):
    """The CUDA kernels of ``theory``'s molecular dynamics on its GPU
    (lqcdflow.kernels.select)."""
    return Phi4Device(theory, on_gpu=True)


class Phi4Device(DeviceMD):
    """The molecular dynamics of a :class:`lqcdflow.theories.phi4.Phi4` theory with the
    kernels of phi4.cu (lqcdflow.kernels.device.DeviceMD)."""

    sources = ("phi4.cu",)
    terms = TERMS

    def __init__(self, theory, on_gpu):
        super().__init__(theory, on_gpu, theory.lattice.local_volume,
                         {"HOPPING": HOPPING, "POTENTIAL": POTENTIAL})
        self._constants = constants(theory.couplings, theory.lattice.backend.dtype)
        faces = self.face_offsets(SIGNS)
        self._dims = self.dims(faces[:, 0], faces[:, 1])

    def momentum_update(self, field, pi, term, c):
        """P(c) of force term ``term``."""
        self.kernels.launch("phi4_momentum_update", self.lattice.local_volume, field, pi,
                            term_halo(self, field, term)[0], self._dims, self.volume,
                            np.int32(term), *self._constants, pi.dtype.type(-c))
