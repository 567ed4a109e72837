"""phi^4 molecular dynamics with the CUDA C kernels of lqcdflow/kernels/cuda/phi4.cu (the
formulas: lqcdflow.kernels.phi4_numba), on a GPU through CuPy, or on the host
(lqcdflow.kernels.device), bitwise equal to the NumPy path. Each update is one kernel over the
sites; the faces of split directions are exchanged first and packed into one halo array.
"""

import numpy as np

from lqcdflow.kernels.device import SITE_T, DeviceKernels
from lqcdflow.kernels.fused import FusedMD

HOPPING, POTENTIAL = 1, 2  # bits of a force term (phi4.cu)


def make(theory):
    """The CUDA kernels of ``theory``'s molecular dynamics on its GPU
    (lqcdflow.kernels.select)."""
    return Phi4Device(theory, on_gpu=True)


class Phi4Device(FusedMD):
    """The molecular dynamics of a :class:`lqcdflow.theories.phi4.Phi4` theory with the
    kernels of phi4.cu (lqcdflow.kernels.fused.FusedMD).

    Parameters
    ----------
    theory : lqcdflow.theories.phi4.Phi4
    on_gpu : bool
        Run them on the GPU (the lattice's backend must be CuPy), else on the host (NumPy; the
        tests' way to check them where there is no GPU).
    """

    terms = {"action": HOPPING | POTENTIAL, "hopping": HOPPING, "potential": POTENTIAL}

    def __init__(self, theory, on_gpu):
        if theory.lattice.backend.on_gpu != on_gpu:
            raise ValueError("the device kernels run where the lattice's arrays are "
                             f"(backend {'cupy' if on_gpu else 'numpy'})")
        super().__init__(theory)
        dtype = theory.lattice.backend.dtype
        self.kernels = DeviceKernels("phi4.cu", dtype, on_gpu)
        self.name = f"compiled (CUDA C on the {'GPU' if on_gpu else 'host'})"
        self._volume = SITE_T(self.lattice.local_volume)
        c = theory.couplings
        # (-h, 4 c4, 2 c2) rounded to the dtype, as NumPy rounds a Python float operand
        self._constants = tuple(np.dtype(dtype).type(v) for v in (-c.h, 4.0 * c.c4, 2.0 * c.c2))
        self._dims = None  # per halo layout: the (shape, strides, split, offsets) table

    def momenta(self, rng, draw):
        """Theory.momenta: the array path's momenta."""
        return self.theory.momenta(rng, draw)

    def momentum_update(self, field, pi, term, c):
        """P(c) of force term ``term``, the faces exchanged first."""
        halo, offsets = self.halo(field, (1, -1))
        self.kernels.launch("phi4_momentum_update", self.lattice.local_volume, field, pi,
                            halo, self._dims_of(offsets), np.int32(self.lattice.ndim),
                            self._volume, np.int32(term), *self._constants,
                            pi.dtype.type(-c))

    def field_update(self, field, pi, c):
        """Q(c): phi <- phi + pi c."""
        self.kernels.launch("phi4_field_update", self.lattice.local_volume, field, pi,
                            self._volume, pi.dtype.type(c))

    def _dims_of(self, offsets):
        """phi4.cu's ``dims``: per direction its extent, stride, whether it is split, and where
        its faces start in the halo (the same for every update: made once)."""
        if self._dims is None:
            strides = np.cumprod((list(self.shape[1:]) + [1])[::-1])[::-1]
            table = np.stack([self.shape, strides, self.split, offsets[:, 0], offsets[:, 1]],
                             axis=1).astype(SITE_T)
            self._dims = self.lattice.xp.asarray(table.reshape(-1))
        return self._dims
