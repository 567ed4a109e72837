"""SU(N) molecular dynamics (N = 2, 3) with the CUDA C kernels of lqcdflow/kernels/cuda/sun.cu
(the passes of lqcdflow.kernels.sun_numba), on a GPU through CuPy, or on the host
(lqcdflow.kernels.device).

P(c) reads the links padded with one layer of neighbours, corners included (Lattice.padded):
a staple's corner x + mu - nu lies on a diagonal neighbour rank when mu and nu are both split.
Q(c) of SU(3) is three steps: a kernel writes the arccos arguments, the array library takes
their arccos (NumPy's is not the C library's; on a GPU CuPy's is CUDA's), a kernel makes the
exponentials and multiplies. sqrt, sin and cos are the compiler's: the C library's on the host
(NumPy's, lqcdflow.kernels.compiled.numpy_trigonometry_differs), CUDA's on a GPU (CuPy's), so
the host build gives the NumPy path's bits and the GPU build is to give the CuPy path's.
float32 is not offered (as for U(1), lqcdflow.kernels.u1_cuda: no build that CI checks would
stand for it).
"""

import numpy as np

from lqcdflow.groups.su_n import ANTISYMMETRIC, C1_SERIES, SINC_SERIES, SYMMETRIC
from lqcdflow.kernels.device import SITE_T, DeviceMD


def make(theory):
    """The CUDA kernels of ``theory``'s molecular dynamics on its GPU
    (lqcdflow.kernels.select)."""
    return SUNDevice(theory, on_gpu=True)


class SUNDevice(DeviceMD):
    """The molecular dynamics of a :class:`lqcdflow.theories.sun.SUN` theory with the kernels
    of sun.cu (lqcdflow.kernels.device.DeviceMD)."""

    sources = ("sun.cu",)
    float64_only = "SU(N)"

    def __init__(self, theory, on_gpu):
        lattice, n = theory.lattice, theory.n
        strides = lattice.padded_strides()
        padded_links = int(strides[0]) * (lattice.local_shape[0] + 2) * lattice.ndim
        super().__init__(theory, on_gpu, padded_links * n * n * 2,
                         {"NC": n, "SYMMETRIC": SYMMETRIC, "ANTISYMMETRIC": ANTISYMMETRIC})
        xp = lattice.xp
        # per direction: the block's extent, the padded field's stride (sun.cu's layout)
        self._layout = xp.asarray(np.stack([lattice.local_shape, strides], axis=1)
                                  .astype(SITE_T).reshape(-1))
        table, c_k = theory.group.generator_table()
        self._generators, self._c_k = xp.asarray(table.astype(SITE_T).reshape(-1)), \
            xp.asarray(c_k)
        self._links = SITE_T(lattice.local_volume * lattice.ndim)
        self._theta = xp.zeros(lattice.local_volume * lattice.ndim)  # SU(3)'s angles
        self._beta_over_n = np.float64(theory.beta / n)

    def momentum_update(self, field, pi, term, c):
        """P(c), on the links padded with their neighbours (module docstring)."""
        self.kernels.launch("sun_momentum_update", self.lattice.local_volume,
                            self.lattice.padded(field), self._layout, self.volume, pi,
                            self._generators, self._c_k, self._beta_over_n, np.float64(-c))

    def field_update(self, field, pi, c):
        """Q(c): U <- exp(i c P) U; for SU(3) the angles first (module docstring)."""
        c, generators = np.float64(c), (self._generators, self._c_k)
        if self.theory.n == 3:
            self.kernels.launch("su3_arccos_arguments", int(self._links), pi, self._links, c,
                                *generators, np.float64(C1_SERIES), self._theta)
            self.lattice.xp.arccos(self._theta, out=self._theta)
        self.kernels.launch("sun_field_update", int(self._links), field, pi, self._links, c,
                            self._theta, *generators, np.float64(C1_SERIES),
                            np.float64(SINC_SERIES))


unavailable = SUNDevice.unavailable  # lqcdflow.kernels.select
