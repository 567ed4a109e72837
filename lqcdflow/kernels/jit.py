"""``kernel``: numba.njit with a cache that knows every source the kernels compile from.

Numba checks a cached function against its own file only (the dependency check of numba PR
#8396 is not merged): a kernel that calls a jitted function of another module (its code is
linked into the caller's) or freezes another module's constants (lqcdflow.rng's Philox
constants) keeps its cached machine code when that module changes, and runs the old code.
(Checked with Numba 0.68: f in b.py calling g in a.py, both cached; after g changed from
x + 1 to x + 2, f(1) still gave 2.) phi4_numba's trajectory calls compiled.field_update. So
every kernel is cached in a directory named by the SHA-256 of all the files they compile from
(:data:`SOURCES`): a change to any of them starts a fresh cache, and caches of other versions
never meet.

The directory lies under NUMBA_CACHE_DIR if that is set, else in lqcdflow/kernels/__pycache__,
or, where the package cannot be written (an installation shared on a cluster), under
~/.cache/lqcdflow.
"""

import hashlib
import os
from pathlib import Path

import numba

_HERE = Path(__file__).resolve().parent
# the kernel modules and what they compile in from elsewhere: the Philox constants, the kinds
# of SU(N)'s generators
SOURCES = tuple(sorted(_HERE.glob("*.py"))) + (_HERE.parent / "rng.py",
                                               _HERE.parent / "groups" / "su_n.py")


def _cache_dir():
    """The cache directory of this version of the kernel sources (module docstring)."""
    digest = hashlib.sha256()
    for path in SOURCES:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    name = f"lqcdflow-kernels-{digest.hexdigest()[:16]}"
    if numba.config.CACHE_DIR:
        return os.path.join(numba.config.CACHE_DIR, name)
    for root in (_HERE / "__pycache__", Path.home() / ".cache" / "lqcdflow"):
        try:
            (root / name).mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(root / name, os.W_OK):
            return str(root / name)
    return None  # nowhere to write: Numba's own locations


CACHE_DIR = _cache_dir()


def kernel(**options):
    """``numba.njit(cache=True, **options)``, cached in :data:`CACHE_DIR`.

    Numba chooses a function's cache location when it is decorated, from
    ``numba.config.CACHE_DIR``; it is set for that moment only, so other Numba code in the
    process keeps its own setting.
    """
    def decorate(func):
        saved = numba.config.CACHE_DIR
        numba.config.CACHE_DIR = CACHE_DIR or saved
        try:
            return numba.njit(cache=True, **options)(func)
        finally:
            numba.config.CACHE_DIR = saved
    return decorate
