"""phi^4 molecular dynamics with the CUDA C kernels of lqcdflow/kernels/cuda/phi4.cu (the
formulas: lqcdflow.kernels.phi4_numba), on a GPU through CuPy, or on the host
(lqcdflow.kernels.device), bitwise equal to the NumPy path. Each update is one kernel over the
sites; the faces of split directions are exchanged first and packed into one halo array.
"""

import numpy as np

from lqcdflow.kernels.device import DeviceMD

HOPPING, POTENTIAL = 1, 2  # bits of a force term (phi4.cu)


def make(theory):
    """The CUDA kernels of ``theory``'s molecular dynamics on its GPU
    (lqcdflow.kernels.select)."""
    return Phi4Device(theory, on_gpu=True)


class Phi4Device(DeviceMD):
    """The molecular dynamics of a :class:`lqcdflow.theories.phi4.Phi4` theory with the
    kernels of phi4.cu (lqcdflow.kernels.device.DeviceMD)."""

    sources = ("phi4.cu",)
    terms = {"action": HOPPING | POTENTIAL, "hopping": HOPPING, "potential": POTENTIAL}

    def __init__(self, theory, on_gpu):
        super().__init__(theory, on_gpu)
        c, real = theory.couplings, np.dtype(theory.lattice.backend.dtype).type
        # (-h, 4 c4, 2 c2) rounded to the dtype, as NumPy rounds a Python float operand
        self._constants = tuple(real(v) for v in (-c.h, 4.0 * c.c4, 2.0 * c.c2))

    def momentum_update(self, field, pi, term, c):
        """P(c) of force term ``term``, the faces exchanged first."""
        halo, offsets = self.halo(field, (1, -1))
        self.kernels.launch("phi4_momentum_update", self.lattice.local_volume, field, pi,
                            halo, self.dims(offsets[:, 0], offsets[:, 1]),
                            np.int32(self.lattice.ndim), self.volume, np.int32(term),
                            *self._constants, pi.dtype.type(-c))
