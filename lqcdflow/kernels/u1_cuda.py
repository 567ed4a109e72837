"""U(1) molecular dynamics with the CUDA C kernels of lqcdflow/kernels/cuda/u1.cu (the two
passes of lqcdflow.kernels.u1_numba: the plaquettes' sines, then the force and the update),
on a GPU through CuPy, or on the host (lqcdflow.kernels.device). The links' upper faces are
exchanged before the sines, the sines' lower faces before the update.

The sine is the compiler's: on the host the C library's, NumPy's float64 one on the CPUs seen
so far (lqcdflow.kernels.compiled.numpy_trigonometry_differs), so the host build gives the
NumPy path's bits; on a GPU CUDA's, which is CuPy's, so the kernels are to give the CuPy array
path's bits there (and differ from NumPy's in the last bits, as CuPy's sine does). float32 is
not offered: its sine is sinf on a GPU but the double sin on the host, so no build that CI
checks would stand for it.
"""

import numpy as np

from lqcdflow.kernels.device import DeviceMD


def make(theory):
    """The CUDA kernels of ``theory``'s molecular dynamics on its GPU
    (lqcdflow.kernels.select)."""
    return U1Device(theory, on_gpu=True)


class U1Device(DeviceMD):
    """The molecular dynamics of a :class:`lqcdflow.theories.u1.U1` theory with the kernels
    of u1.cu (lqcdflow.kernels.device.DeviceMD)."""

    sources = ("u1.cu",)
    float64_only = "U(1)"

    def __init__(self, theory, on_gpu):
        ndim = theory.lattice.ndim
        planes = ndim * (ndim - 1) // 2
        super().__init__(theory, on_gpu, theory.lattice.local_volume * max(ndim, planes), {})
        self._sines = self.lattice.xp.empty(tuple(self.lattice.local_shape) + (planes,))
        self._beta = np.float64(theory.beta)
        # in sites, the links' upper faces (sign +1) and the sines' lower ones (-1) alike
        faces = self.face_offsets((1,))[:, 0]
        self._dims = self.dims(faces, faces)

    def momentum_update(self, field, pi, term, c):
        """P(c): the links' upper faces, the sines, their lower faces, the update."""
        links, _ = self.halo(field, (1,))
        self.kernels.launch("u1_plaquette_sines", self.lattice.local_volume, field, links,
                            self._dims, self.volume, self._sines)
        sines, _ = self.halo(self._sines, (-1,))
        self.kernels.launch("u1_momentum_update", self.lattice.local_volume, self._sines,
                            sines, self._dims, self.volume, pi, self._beta, np.float64(-c))


unavailable = U1Device.unavailable  # lqcdflow.kernels.select
