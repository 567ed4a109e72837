"""Array backends: NumPy on CPUs, CuPy on NVIDIA GPUs, behind one name ``xp``.

CuPy is imported only when asked for, so that machines without a GPU never need it.
"""

from dataclasses import dataclass
from types import ModuleType

import numpy as np

DTYPES = {"float64": np.float64, "float32": np.float32}


class BackendError(RuntimeError):
    """The requested array backend cannot be used on this machine."""


@dataclass(frozen=True)
class Backend:
    """An array module and a floating-point type for lattice fields.

    Attributes
    ----------
    name : str
        ``"numpy"`` or ``"cupy"``.
    xp : module
        The array module (``numpy`` or ``cupy``).
    dtype : numpy.dtype
        Floating-point type of fields and momenta.
    """

    name: str
    xp: ModuleType
    dtype: np.dtype

    @property
    def on_gpu(self) -> bool:
        return self.name == "cupy"

    def asnumpy(self, a) -> np.ndarray:
        """Copy an array of this backend to host memory (no copy for NumPy)."""
        return self.xp.asnumpy(a) if self.on_gpu else np.asarray(a)

    def synchronize(self) -> None:
        """Wait for queued GPU work (a no-op on CPUs); needed before MPI reads device memory."""
        if self.on_gpu:
            self.xp.cuda.get_current_stream().synchronize()


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, or CUDA driver/runtime errors of any kind
        return False


def make_backend(name: str = "numpy", dtype: str = "float64") -> Backend:
    """Return the backend ``name`` ("numpy" or "cupy") with field type ``dtype``.

    >>> make_backend("numpy", "float32").dtype
    dtype('float32')
    """
    if dtype not in DTYPES:
        raise BackendError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if name == "numpy":
        return Backend("numpy", np, np.dtype(DTYPES[dtype]))
    if name == "cupy":
        if not cupy_available():
            raise BackendError("backend 'cupy' needs CuPy and a CUDA device; none found")
        import cupy

        return Backend("cupy", cupy, np.dtype(DTYPES[dtype]))
    raise BackendError(f"backend must be 'numpy' or 'cupy', got {name!r}")
