"""Kernels written once in CUDA C (lqcdflow/kernels/cuda/*.cu) and run on a GPU through CuPy,
or on the host, compiled from the same file by the C compiler, where the tests check them
against the NumPy path bit for bit (CI has no GPU).

Bitwise equality with the array path rests on the rules of lqcdflow.kernels.compiled, which
both compilers are held to here: nvrtc with ``--fmad=false`` and the host compiler with
``-ffp-contract=off`` (neither contracts a multiply and an add into an FMA) and no fast-math;
the kernels keep NumPy's operations and their order, and take their constants rounded to the
field's dtype. CuPy compiles every kernel, its own array operations too, with ``-ftz=true``
(after the options given, so it cannot be overridden): in float32 subnormals are flushed to
zero on the GPU, by the array path and the kernels alike, and not on the host.

A kernel is a grid-stride loop over sites: on the host a single "thread" (blockIdx = threadIdx
= 0, blockDim = gridDim = 1) runs every site, in order. The number of dimensions and the
theory's constants are compiled in (``defines``: per-site arrays then live in registers on a
GPU); each set of them is its own module, compiled once (CuPy and :func:`host_library` cache
them).

Indices are 32-bit (``site_t``, unsigned): on a GPU a 64-bit division per site and direction
would cost more than the site's memory traffic. :class:`DeviceMD` refuses a rank whose arrays
would hold 2^31 values or more.
"""

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from lqcdflow.kernels.fused import FusedMD

SOURCE_DIR = Path(__file__).resolve().parent / "cuda"
REALS = {np.dtype(np.float64): "double", np.dtype(np.float32): "float"}
SITE_T = np.uint32
MAX_VALUES = 1 << 31
THREADS_PER_BLOCK = 256
MAX_BLOCKS = 1 << 16  # the grid-stride loop takes the rest

DEVICE_PRELUDE = """\
#define KERNEL extern "C" __global__
#define DEVICE __device__ __forceinline__
typedef unsigned int site_t;
"""
HOST_PRELUDE = """\
#include <math.h>
#define KERNEL
#define DEVICE static inline
typedef unsigned int site_t;
static const struct { unsigned int x; } threadIdx = {0}, blockIdx = {0}, blockDim = {1},
    gridDim = {1};
"""
NVRTC_OPTIONS = ("--fmad=false", "-std=c++14")
HOST_OPTIONS = ("-O2", "-ffp-contract=off", "-fno-fast-math", "-fPIC", "-shared", "-x", "c")
_CTYPES = {np.dtype(np.float64): ctypes.c_double, np.dtype(np.float32): ctypes.c_float,
           np.dtype(np.int32): ctypes.c_int, np.dtype(np.uint32): ctypes.c_uint}


def source(names, dtype, prelude, defines):
    """The text compiled for the kernels files ``names`` (fields.cu first, then these) with
    ``real`` the C type of ``dtype`` and the integer macros ``defines`` ({name: value})."""
    macros = "".join(f"#define {name} {int(value)}\n" for name, value in defines.items())
    return (f"typedef {REALS[np.dtype(dtype)]} real;\n" + macros + prelude
            + "".join((SOURCE_DIR / name).read_text() for name in ("fields.cu",) + names))


def first_error(log):
    """The first line of a compiler's ``log`` that names an error (else its first line)."""
    lines = log.strip().splitlines() or ["(no message)"]
    return next((line for line in lines if "error" in line), lines[0])


class DeviceKernels:
    """The kernels of CUDA C files for one dtype, on the GPU (CuPy) or on the host, compiled
    when made (a compiler's error is a one-line RuntimeError).

    Parameters
    ----------
    names : tuple of str
        Files in lqcdflow/kernels/cuda, compiled after fields.cu.
    dtype : numpy dtype
        float64 or float32: the kernels' ``real``.
    on_gpu : bool
        Compile with nvrtc (CuPy's RawModule) and launch on the current device, else compile
        with the host's C compiler (``CC``, default cc) and call through ctypes.
    defines : dict
        Integer macros of the source ({name: value}).
    """

    def __init__(self, names, dtype, on_gpu, defines):
        self.on_gpu, self._functions = on_gpu, {}
        if on_gpu:
            import cupy

            module = cupy.RawModule(code=source(names, dtype, DEVICE_PRELUDE, defines),
                                    options=NVRTC_OPTIONS)
            try:
                module.compile()
            except cupy.cuda.compiler.CompileException as e:
                raise RuntimeError(f"compiling the CUDA kernels failed: {first_error(str(e))}") \
                    from None
            self._module = module
        else:
            self._library = ctypes.CDLL(str(host_library(source(names, dtype, HOST_PRELUDE,
                                                                defines))))

    def launch(self, kernel, sites, *args):
        """Run ``kernel`` over ``sites`` sites (or values) with ``args``: arrays of the
        backend, or NumPy scalars of the kernel's C types (float64, float32, int32,
        uint32)."""
        function = self._functions.get(kernel)
        if function is None:
            function = self._functions[kernel] = (
                self._module.get_function(kernel) if self.on_gpu
                else getattr(self._library, kernel))
        if self.on_gpu:
            blocks = max(1, min(MAX_BLOCKS, -(-sites // THREADS_PER_BLOCK)))
            function((blocks,), (THREADS_PER_BLOCK,), args)
        else:
            function(*(_host_argument(a) for a in args))


def _host_argument(value):
    """``value`` as ctypes passes it to a host kernel: an array by its address."""
    if isinstance(value, np.ndarray):
        if not value.flags.c_contiguous:
            raise ValueError("the kernels take C-contiguous arrays")
        return ctypes.c_void_p(value.ctypes.data)
    return _CTYPES[value.dtype](value)


def host_library(text):
    """The shared library compiled from C ``text`` for the host, cached by the hash of the
    text, the compiler and its options (in lqcdflow/kernels/__pycache__, or
    ~/.cache/lqcdflow where the package cannot be written); written under a temporary name
    and renamed, so that ranks compiling it at once never load half a file."""
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        raise RuntimeError(f"the host kernels need a C compiler: {compiler} (CC) not found")
    key = hashlib.sha256("\0".join((text, compiler) + HOST_OPTIONS).encode()).hexdigest()[:16]
    for root in (Path(__file__).resolve().parent / "__pycache__",
                 Path.home() / ".cache" / "lqcdflow"):
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(root, os.W_OK):
            break
    path = root / f"host-kernels-{key}.so"
    if path.exists():
        return path
    with tempfile.TemporaryDirectory(dir=root) as scratch:
        c_file, library = Path(scratch) / "kernels.c", Path(scratch) / "kernels.so"
        c_file.write_text(text)
        result = subprocess.run([compiler, *HOST_OPTIONS, str(c_file), "-o", str(library)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"compiling the host kernels failed: {first_error(result.stderr)}")
        os.replace(library, path)
    return path


class DeviceMD(FusedMD):
    """A theory's molecular dynamics with the CUDA C kernels of ``sources`` (files in
    lqcdflow/kernels/cuda) on the lattice's GPU or, on the NumPy backend, the host
    (lqcdflow.kernels.fused.FusedMD); the momenta are the array path's, Q(c) is fields.cu's
    field_update.

    Parameters
    ----------
    theory : lqcdflow.theories.base.Theory
    on_gpu : bool
        Run on the GPU (the lattice's backend must be CuPy), else on the host (NumPy; the
        tests' way to check the kernels where there is no GPU).
    largest : int
        The most values of an array the kernels index (field, momenta, scratch, padded field).
    defines : dict
        The kernels' integer macros besides NDIM, the number of dimensions.
    """

    sources = ()
    float64_only = None  # the theory's name where the kernels take float64 only

    def __init__(self, theory, on_gpu, largest, defines):
        why = self.unavailable(theory)
        if why:
            raise ValueError(why)
        lattice = theory.lattice
        if lattice.backend.on_gpu != on_gpu:
            raise ValueError("the device kernels run where the lattice's arrays are "
                             f"(backend {'cupy' if on_gpu else 'numpy'})")
        if largest >= MAX_VALUES:
            raise ValueError(f"{lattice.local_volume} sites per rank make arrays of {largest} "
                             f"values: the device kernels index at most {MAX_VALUES - 1} "
                             "values per array; use more ranks")
        super().__init__(theory)
        self.kernels = DeviceKernels(self.sources, lattice.backend.dtype, on_gpu,
                                     {"NDIM": lattice.ndim, **defines})
        self.name = f"compiled (CUDA C on the {'GPU' if on_gpu else 'host'})"
        self.volume = SITE_T(lattice.local_volume)

    @classmethod
    def unavailable(cls, theory):
        """Why these kernels cannot run ``theory``, or None: kernels with sines and cosines
        take float64 only (``float64_only``), since on the host, where CI checks them, those
        are the C library's double ones (NumPy's float32 ones are its own)."""
        if cls.float64_only and theory.lattice.backend.dtype != np.float64:
            return f"the {cls.float64_only} CUDA kernels need [run] dtype = 'float64'"
        return None

    def momenta(self, rng, draw):
        """Theory.momenta: the array path's momenta."""
        return self.theory.momenta(rng, draw)

    def field_update(self, field, pi, c):
        """Q(c): U <- U + P c (fields.cu's field_update)."""
        self.kernels.launch("field_update", field.size, field, pi, SITE_T(field.size),
                            pi.dtype.type(c))

    def dims(self, up_faces, down_faces):
        """fields.cu's ``dims`` (an array of the backend): per direction its extent, stride,
        whether it is split, and where its faces beyond the block in +e_mu and -e_mu start
        in their halos, in sites (``up_faces``, ``down_faces``: per direction, from
        FusedMD.face_offsets)."""
        shape = self.shape
        strides = np.cumprod((list(shape[1:]) + [1])[::-1])[::-1]
        table = np.stack([shape, strides, self.split, up_faces, down_faces], axis=1)
        return self.lattice.xp.asarray(table.astype(SITE_T).reshape(-1))
