"""Which kernels run the molecular dynamics and the local updates: NumPy/CuPy array
operations, or compiled ones.

``[run] kernels``: "numpy" (array operations, every theory and backend), "compiled" (a
theory's compiled kernels: its ``compiled_kernels`` names the module, whose
``make(theory, threads)`` returns those of the molecular dynamics, ``make_metropolis`` and
``make_heatbath(theory, threads, rng, hits, width)`` those of the local updates
(lqcdflow.mc.local), and whose ``unavailable(theory)``, if it has one, says why they cannot
serve a run; an error where there are none), "auto" (compiled where they can serve, else array
operations). Both give the same bits (lqcdflow.kernels.compiled says how), so the switch
changes the speed and never the chain. Where compiled kernels run, the reproducible sums
take their compiled digits too (lqcdflow.parallel.reduce.use_compiled_digits).

On a GPU (backend cupy), "compiled" takes the CUDA kernels of the molecular dynamics that a
theory's ``device_kernels`` module makes (``make(theory)``, lqcdflow.kernels.device; its
``unavailable(theory)``, if it has one, says why they cannot serve a run); "auto"
keeps the array operations there until those kernels have been checked on a GPU (they are
checked on the host, from the same source, in CI).
"""

import importlib
import os
import sys

from lqcdflow.mc.integrators import integrate

KERNELS = ("auto", "numpy", "compiled")
# Sites per rank from which the compiled updates are shared among threads: below, waking the
# threads takes longer than an update (64^2 sites: ~2 us of phi^4 work per update).
THREADED_FROM = 1 << 15


class ArrayKernels:
    """The molecular dynamics in array operations of the lattice's backend: the theory's
    momenta, and :func:`lqcdflow.mc.integrators.integrate`."""

    name = "numpy"

    def __init__(self, theory):
        self.theory = theory

    def momenta(self, rng, draw):
        return self.theory.momenta(rng, draw)

    def integrate(self, field, pi, levels, trajectory_length):
        integrate(field, pi, levels, trajectory_length, self.theory.update_field,
                  self.theory.lattice.xp)


def unavailable(theory, maker="make", what="molecular-dynamics"):
    """Why ``theory`` has no compiled ``what`` kernels here (a sentence), or None if it has:
    its module's ``maker`` makes them (``make``: molecular dynamics; ``make_metropolis``,
    ``make_heatbath``: local updates); on a GPU, its CUDA kernels."""
    if theory.lattice.backend.on_gpu:
        return _missing_on_gpu(theory, maker, what)
    return _missing(theory, maker, what) or _module_says(theory.compiled_kernels, theory)


def _missing(theory, maker, what):
    """Why no compiled kernels can run ``theory`` at all (numba and the module only imported
    when the rest allows), or None."""
    if getattr(theory, "compiled_kernels", None) is None:
        return f"{type(theory).__name__} has no compiled kernels (yet)"
    try:
        importlib.import_module("numba")
    except ImportError:
        return "numba is not installed (pip install numba, or bash tools/setup.sh)"
    if not hasattr(importlib.import_module(theory.compiled_kernels), maker):
        return f"{type(theory).__name__} has no compiled {what} kernels (yet)"
    return None


def _module_says(module, theory):
    """What the kernels' module ``module`` (a name) says in its own ``unavailable(theory)``
    (None if it has none)."""
    check = getattr(importlib.import_module(module), "unavailable", None)
    return check(theory) if check else None


def md_kernels(theory, kernels="auto"):
    """The molecular-dynamics kernels of ``theory`` for the ``kernels`` setting (module
    docstring). Raises ValueError (one line) for "compiled" where there are none."""
    return choose(theory, kernels, "make", "molecular-dynamics", lambda: ArrayKernels(theory))


def choose(theory, kernels, maker, what, array, *args):
    """The kernels of the ``kernels`` setting (module docstring): ``array()``, or the compiled
    ones, ``module.<maker>(theory, threads, *args)``. Raises ValueError (one line) for
    "compiled" where there are none.
    """
    if kernels not in KERNELS:
        raise ValueError(f"kernels must be one of {', '.join(KERNELS)}, got {kernels!r}")
    if kernels == "numpy":
        return array()
    if theory.lattice.backend.on_gpu:
        return _on_gpu(theory, kernels, maker, what, array)
    threads = 1
    if getattr(theory, "compiled_kernels", None):
        threads = threads_for(theory.lattice)
        _size_thread_pool(threads)
    why = _missing(theory, maker, what)
    if not why:
        module = importlib.import_module(theory.compiled_kernels)
        why = _module_says(theory.compiled_kernels, theory)
    if why and kernels == "auto":
        return array()
    if why:
        raise ValueError(f"kernels = 'compiled' cannot be used: {why}")
    # here: serial commands import this module and never MPI, which reduce imports
    from lqcdflow.kernels.reduce_numba import digits
    from lqcdflow.parallel.reduce import use_compiled_digits

    use_compiled_digits(digits)
    return getattr(module, maker)(theory, threads, *args)


def _on_gpu(theory, kernels, maker, what, array):
    """:func:`choose` on a GPU: the array operations for "auto" (module docstring), for
    "compiled" the theory's CUDA kernels of the molecular dynamics."""
    if kernels == "auto":
        return array()
    why = _missing_on_gpu(theory, maker, what)
    if why:
        raise ValueError(f"kernels = 'compiled' cannot be used: {why}")
    return importlib.import_module(theory.device_kernels).make(theory)


def _missing_on_gpu(theory, maker, what):
    """Why no CUDA kernels can run ``theory``'s ``what`` on its GPU (its ``device_kernels``
    module's ``unavailable(theory)`` too, where it has one), or None."""
    module = getattr(theory, "device_kernels", None)
    if maker != "make" or module is None:
        return (f"{type(theory).__name__} has no CUDA {what} kernels (yet); use kernels = "
                "'auto' or 'numpy' on a GPU")
    return _module_says(module, theory)


def threads_for(lattice):
    """CPU threads for a rank's compiled kernels: one below THREADED_FROM sites per rank, else
    the cores this process may run on shared by the ranks of its node (collective over the
    lattice's communicator then; every rank has the same local volume)."""
    if lattice.local_volume < THREADED_FROM:
        return 1
    from mpi4py import MPI  # here: serial commands import this module and never MPI

    node = lattice.comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return max(1, len(os.sched_getaffinity(0)) // node.Get_size())
    finally:
        node.Free()


def _size_thread_pool(threads):
    """Numba makes its thread pool once, at the first parallel call, with NUMBA_NUM_THREADS
    threads (default: all cores), and idle pool threads spin: with several ranks per node they
    take the cores of the other ranks (an 8x8 chain on 2 ranks ran 10x slower). So the pool
    gets this rank's threads, set before numba is imported (unless the user set the
    variable)."""
    if "numba" not in sys.modules:
        os.environ.setdefault("NUMBA_NUM_THREADS", str(threads))
