"""What the compiled (Numba) kernels of every theory share. Molecular dynamics: the momenta
drawn by the compiled Gaussian generator (lqcdflow.kernels.rng_numba), running a trajectory's
updates (lqcdflow.mc.integrators.trajectory_updates) through a theory's compiled momentum
update, the field update U <- U + c P, and the threads (what every kind of fused kernel shares
is lqcdflow.kernels.fused). Local updates: one group of a checkerboard sweep (lqcdflow.mc.local)
at a time, the theory's kernel updating the group's sites from their environment.

Bitwise equality with the array path rests on three rules every kernel keeps: the operations,
operands and their order are those of the NumPy code; constants are rounded to the field's
dtype first, as NumPy rounds a Python float operand; and Numba compiles without fastmath, so
LLVM neither reorders nor contracts a multiply and an add into an FMA. Sites (links) are
independent within an update, so the threads do not change the bits either.
"""

import functools
import math

import numba
import numpy as np

from lqcdflow.kernels import rng_numba
from lqcdflow.kernels.fused import FusedMD
from lqcdflow.kernels.jit import kernel
from lqcdflow.rng import STREAM_LOCAL, STREAM_MOMENTA, check_draw
from lqcdflow.theories.base import Theory


@kernel(parallel=True)
def field_update(field, pi, c):
    """Q(c): U <- U + pi c on flat fields, in place (fields in a vector space or angles;
    the array path's axpy(field, c, pi))."""
    for i in numba.prange(field.size):
        field[i] = field[i] + pi[i] * c


@kernel(inline="always")
def block_range(block, blocks, n):
    """(first, stop): the items of block ``block`` when n items are cut into ``blocks``
    blocks for the threads, sizes differing by at most one."""
    return block * n // blocks, (block + 1) * n // blocks


@kernel(inline="always")
def add_scaled(field, pi, c):
    """:func:`field_update` in the calling thread, for kernels that run a whole trajectory
    in one thread."""
    for i in range(field.size):
        field[i] = field[i] + pi[i] * c


@kernel()
def _sin_cos(x):
    """sin and cos of ``x`` from the C library, as the kernels compute them."""
    out = np.empty((2, x.size))
    for i in range(x.size):
        out[0, i], out[1, i] = math.sin(x[i]), math.cos(x[i])
    return out


@functools.cache
def numpy_trigonometry_differs():
    """Why NumPy's float64 sin or cos would not be the kernels' (the C library's), or None:
    compared on 4096 angles in [-8 pi, 8 pi] and 0, -0, +-pi, 1e-300, 1e300. (They are the
    same on the CPUs seen so far; NumPy's float32 ones are its own vectorised ones.)"""
    angles = np.random.default_rng(0).uniform(-8 * math.pi, 8 * math.pi, 4096)
    angles = np.concatenate([angles, [0.0, -0.0, math.pi, -math.pi, 1e-300, 1e300]])
    if not np.array_equal(np.stack([np.sin(angles), np.cos(angles)]), _sin_cos(angles)):
        return "NumPy's sine or cosine differs from the C library's on this machine"
    return None


class CompiledMD(FusedMD):
    """A theory's compiled molecular dynamics (lqcdflow.kernels.fused.FusedMD) on CPUs, with
    the momenta drawn by the compiled Gaussian generator and Q(c) = :func:`field_update`
    where the field is a vector space.

    Parameters
    ----------
    theory : lqcdflow.theories.base.Theory
        On the NumPy backend, with the Gaussian momenta of Theory.momenta.
    threads : int
        Threads of the updates (lqcdflow.kernels.select.threads_for), at most Numba's pool.
    """

    def __init__(self, theory, threads=1):
        threads = min(threads, numba.config.NUMBA_NUM_THREADS)
        if theory.lattice.backend.on_gpu:
            raise ValueError("the Numba kernels run on CPUs (backend numpy)")
        if type(theory).momenta is not Theory.momenta:
            raise ValueError(f"{type(theory).__name__} draws its own momenta")
        super().__init__(theory)
        self.threads = threads
        self._dofs = self.lattice.dof_index(theory.momentum_shape).reshape(-1)
        self.name = f"compiled (Numba {numba.__version__}, {threads} thread(s))"

    def momenta(self, rng, draw):
        """Theory.momenta(rng, draw): P ~ N(0, 1) per degree of freedom from the counter RNG,
        the same bits, drawn by rng_numba.normal."""
        check_draw(draw)
        numba.set_num_threads(self.threads)
        out = np.empty(self._dofs.size)
        key = (np.uint64(word) for word in rng.key)
        rng_numba.normal(self._dofs, np.uint64(draw), np.uint64(STREAM_MOMENTA), *key, out)
        shape = tuple(self.lattice.local_shape) + tuple(self.theory.momentum_shape)
        return out.reshape(shape).astype(self.lattice.backend.dtype)

    def integrate(self, field, pi, levels, trajectory_length):
        """FusedMD.integrate with this rank's threads."""
        # also starts Numba's threads: a kernel loaded from the cache that calls parallel
        # ones (phi^4's trajectory) crashes when they run before any thread was started
        numba.set_num_threads(self.threads)
        super().integrate(field, pi, levels, trajectory_length)

    def field_update(self, field, pi, c):
        """Q(c) in place: U <- U + c P (:func:`field_update`); group-valued fields have their
        own."""
        field_update(field.reshape(-1), pi.reshape(-1), c)

    def neighbour_table(self, sign):
        """table[mu, i]: the site x_i + sign e_mu of the block for each direction mu (C order),
        or, across a split direction, V + its index in the halo of :meth:`halo` (..., (sign,))
        counted in sites: the faces of the split directions one after the other, each in C
        order. Unsplit directions wrap around the block."""
        shape, volume = tuple(self.lattice.local_shape), self.lattice.local_volume
        sites = np.arange(volume, dtype=np.int64).reshape(shape)
        starts = volume + self.face_offsets((sign,))[:, 0]
        table = []
        for mu in range(len(shape)):
            neighbours = np.roll(sites, -sign, axis=mu)
            if self.split[mu]:
                edge = [slice(None)] * len(shape)
                edge[mu] = -1 if sign > 0 else 0
                plane = neighbours[tuple(edge)]
                neighbours[tuple(edge)] = starts[mu] + np.arange(plane.size).reshape(plane.shape)
            table.append(neighbours.reshape(-1))
        return np.stack(table)


@kernel(inline="always")
def metropolis_hits(field, link, around, params, dof, sweep, key0, key1, hits, width,
                    local_action, propose):
    """The Metropolis hits of LocalSampler (lqcdflow.mc.local.ArrayLocal) at the degree of
    freedom field[link] with random-number index ``dof`` in sweep ``sweep``, in place; returns
    (the number of changes, the change of the local action).

    Hit h takes the uniforms (u, u') of the words of (dof, sweep, STREAM_LOCAL, h). The
    proposal propose(value, u, width, params), stored and read back so that it has the
    field's dtype (as the array path's astype), is accepted if Delta s <= 0 or
    log_exact(u') < -Delta s, s = local_action(value, around, params), and if it differs from
    the value. ``local_action`` and ``propose`` are a theory's jitted functions, inlined into
    its kernel (which Numba then caches as any other).
    """
    value = field[link]
    start = action = local_action(value, around, params)
    count = 0.0
    for hit in range(hits):
        u, v = rng_numba.uniforms(dof, sweep, np.uint64(STREAM_LOCAL), np.uint64(hit), key0,
                                  key1)
        field[link] = propose(value, u, width, params)
        proposal = field[link]
        proposed = local_action(proposal, around, params)
        delta = proposed - action
        if (delta <= 0 or rng_numba.log(v) < -delta) and proposal != value:
            value, action = proposal, proposed
            count += 1.0
    field[link] = value
    return count, action - start


class CompiledLocal:
    """A theory's compiled local updates (lqcdflow.mc.local.LocalSampler's ``kernels``);
    subclasses supply ``update_sites(field, component, environment, sites, dofs, sweep,
    changed, delta_s)`` on flat arrays, in place.

    Parameters
    ----------
    theory : lqcdflow.theories.base.Theory
        On the NumPy backend.
    threads : int
        Threads over the sites of a group, at most Numba's pool.
    algorithm : str
        "metropolis" or "heatbath".
    rng : lqcdflow.rng.CounterRNG
    hits, width : int, float
        Metropolis hits per degree of freedom and the proposal width.
    """

    def __init__(self, theory, threads, algorithm, rng, hits, width):
        if theory.lattice.backend.on_gpu:
            raise ValueError("the Numba kernels run on CPUs (backend numpy)")
        self.theory, self.algorithm, self.hits, self.width = theory, algorithm, hits, width
        self.threads = min(threads, numba.config.NUMBA_NUM_THREADS)
        self.key = tuple(np.uint64(word) for word in rng.key)
        self.name = f"compiled (Numba {numba.__version__}, {self.threads} thread(s))"

    def update(self, field, component, environment, group, sweep, changed, delta_s):
        """The updates of ``component`` of ``field`` at one group of sites (mask, flat site
        indices, random-number indices) in sweep ``sweep``: in place, the number of changes
        at each site and the change of its local action added to ``changed`` and ``delta_s``
        (LocalSampler.step)."""
        if not (field.flags.c_contiguous and environment.flags.c_contiguous):
            raise ValueError("the compiled local updates need C-contiguous fields")
        check_draw(sweep)
        numba.set_num_threads(self.threads)
        _, sites, dofs = group
        self.update_sites(field.reshape(-1), component, environment.reshape(-1), sites, dofs,
                          np.uint64(sweep), changed.reshape(-1), delta_s.reshape(-1))
