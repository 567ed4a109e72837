"""Compiled (Numba) molecular dynamics of phi^4 on CPUs, bitwise equal to the NumPy path.

The NumPy path (lqcdflow.mc.integrators.integrate with Phi4.force and axpy) makes several
array passes per update. Here each update is one pass over the sites:

    P(c), force term "action":     pi_x <- pi_x + (n_x (-h) + ((phi_x^2) (4 c4) + 2 c2) phi_x) (-c)
          force term "hopping":    pi_x <- pi_x + (n_x (-h)) (-c)
          force term "potential":  pi_x <- pi_x + (((phi_x^2) (4 c4) + 2 c2) phi_x) (-c)
    Q(c):                          phi_x <- phi_x + pi_x c

with n_x = (phi(x + e_0) + phi(x - e_0)) + (phi(x + e_1) + phi(x - e_1)) + ..., summed in this
order: the operations of Lattice.neighbour_sum, Phi4.force, Phi4.hopping_force,
Phi4.potential_force and axpy, so the fields are the bits of the NumPy path (the rules:
lqcdflow.kernels.compiled).

A P followed by a Q (with one level every P of leapfrog and omelyan2 but a trajectory's last;
with nested levels those of the innermost level but its last: a P followed by another P runs
alone) is one pass too (update kind PQ, lqcdflow.kernels.fused): chunk by chunk, in the order of
the sites, P, and then the Q of the sites the P has left behind by a whole slice of direction 0
(lag = l_1 ... l_{D-1} sites), which no later P reads any more (a P reads its neighbours, at
most one such slice away) and whose phi and pi are still in the caches. The first slice is
read by the last slice's P across the periodic wrap, so its Q waits for the end of the pass;
so does the last slice's, done after it. With threads, each thread runs this on its own block
of chunks and leaves the Q of the slices at its block's ends until every P is done. Each site
has its P before its Q, as in two passes, so the bits are those of two passes. On one thread
this took the step from 0.64 to 0.43 ms on 512^2 and from 3.7 to 3.0 ms on 32^4 (README).

Local Metropolis updates (lqcdflow.mc.local) are one pass over a checkerboard group's sites,
each site's hits in turn (lqcdflow.kernels.compiled.metropolis_hits with phi^4's local action),
from the neighbour sums of the array path.

Neighbours across a split direction come from the faces the lattice exchanges, packed into one
halo array; the wrap of an unsplit direction is read from the field itself. Without split
directions a whole trajectory is one compiled call (:func:`_trajectory`; with one thread
:func:`_trajectory_one_thread`), so small lattices are not bound by Python's dispatch.
"""

import numba
import numpy as np

from lqcdflow.kernels.compiled import CompiledLocal, CompiledMD, add_scaled, block_range, \
    field_update, metropolis_hits
from lqcdflow.kernels.fused import P, PQ
from lqcdflow.kernels.jit import kernel
from lqcdflow.kernels.phi4_terms import HOPPING, POTENTIAL, TERMS, constants, term_halo

CHUNK = 1024  # sites of a chunk of the momentum update (its neighbour sums: 8 KiB in float64)
BLOCKS = 64  # at most, of chunks for the threads


@kernel(inline="always")
def _chunking(shape):
    """(rows per chunk, chunks per plane, chunks): a chunk is up to CHUNK sites of whole rows
    (lines along the last axis) of one plane (the last two axes; in 1D the line)."""
    length = shape[shape.shape[0] - 1]
    rows_per_plane = shape[shape.shape[0] - 2] if shape.shape[0] > 1 else 1
    rows = min(max(1, CHUNK // length), rows_per_plane)
    per_plane = -(-rows_per_plane // rows)
    planes = 1
    for mu in range(shape.shape[0] - 2):
        planes *= shape[mu]
    return rows, per_plane, planes * per_plane


@kernel(inline="always")
def _chunk_rows(chunk, shape):
    """(first row, stop row) of chunk ``chunk`` (:func:`_chunking`); rows are lines along the
    last axis, numbered in C order."""
    ndim = shape.shape[0]
    rows_per_plane = shape[ndim - 2] if ndim > 1 else 1
    chunk_rows, per_plane, _ = _chunking(shape)
    plane, part = chunk // per_plane, chunk % per_plane
    row = plane * rows_per_plane + part * chunk_rows
    return row, min(row + chunk_rows, (plane + 1) * rows_per_plane)


@kernel(inline="always")
def _lagged_sites(first_chunk, stop_chunk, shape):
    """(lo, hi, q_first, q_stop, lag): the sites [lo, hi) of chunks first_chunk to
    stop_chunk - 1, and those [q_first, q_stop) whose Q may follow the chunks' P ``lag`` sites
    behind it, lag the stride of direction 0 (module docstring); the others' Q waits for the
    P of every chunk."""
    length = shape[shape.shape[0] - 1]
    lo = _chunk_rows(first_chunk, shape)[0] * length
    hi = _chunk_rows(stop_chunk - 1, shape)[1] * length
    lag = 1
    for mu in range(1, shape.shape[0]):
        lag *= shape[mu]
    q_first = min(lo + lag, hi)
    return lo, hi, q_first, max(q_first, hi - lag), lag


@kernel(inline="always")
def _neighbours(phi, halo, split, offsets, mu, site, x, extent, stride):
    """(up, up_at, down, down_at): where the neighbours in direction mu of the run of sites
    from ``site`` (all at x_mu = x) start: the field at +-stride, or across the boundary the
    field's own wrap or the face received from the neighbouring rank (runs stay contiguous
    in both)."""
    face = (site // (stride * extent)) * stride + site % stride
    up, up_at = phi, site + stride
    if x == extent - 1:
        if split[mu]:
            up, up_at = halo, offsets[mu, 0] + face
        else:
            up_at = site - (extent - 1) * stride
    down, down_at = phi, site - stride
    if x == 0:
        if split[mu]:
            down, down_at = halo, offsets[mu, 1] + face
        else:
            down_at = site + (extent - 1) * stride
    return up, up_at, down, down_at


@kernel(inline="always")
def _add_pairs(n, at, up, up_at, down, down_at, count, first):
    """n[at + j] <- (n[at + j] +) (up[up_at + j] + down[down_at + j]), j < count: one
    direction's pairs of neighbours, the first direction's without the sum before."""
    # views indexed from 0: the compiler then knows every index is >= 0 (no wraparound test
    # per element) and vectorises the loop
    out, u, d = n[at:at + count], up[up_at:up_at + count], down[down_at:down_at + count]
    if first:
        for j in range(count):
            out[j] = u[j] + d[j]
    else:
        for j in range(count):
            out[j] = out[j] + (u[j] + d[j])


@kernel(inline="always")
def _update_chunks(phi, pi, halo, shape, split, offsets, term, minus_h, four_c4, two_c2,
                   minus_c, first_chunk, stop_chunk, c, q_first, q_stop, lag):
    """P(c) of force term ``term`` (module docstring) on the chunks first_chunk to
    stop_chunk - 1 (:func:`_chunking`) of the flat local fields, in place, each chunk followed
    by Q(c) of the sites of [q_first, q_stop) ``lag`` or more sites before its end (none for
    an empty range; :func:`_lagged_sites`).

    The neighbour sum of a chunk is accumulated in a buffer (in L1), one direction after the
    other in the order of the module docstring, each in contiguous loops that the compiler
    vectorises: for mu < D - 2 one loop over the chunk (x_mu is the same for all its sites),
    for D - 2 one over its inner rows and one per boundary row, along the rows one over the
    chunk whose row ends, which took a neighbour of the next row, are then computed again
    from the sum before. Then the force and the update of the chunk.
    """
    ndim = shape.shape[0]
    last = ndim - 1
    length = shape[last]
    strides = np.empty(ndim, np.int64)
    stride = 1
    for mu in range(last, -1, -1):
        strides[mu] = stride
        stride *= shape[mu]
    chunk_rows = _chunking(shape)[0]
    n = np.empty(chunk_rows * length, phi.dtype)
    ends = np.empty((2, chunk_rows), phi.dtype)  # the sums at row ends before the last axis
    q_done = q_first
    for chunk in range(first_chunk, stop_chunk):
        row, stop = _chunk_rows(chunk, shape)
        base, count = row * length, (stop - row) * length
        if term != POTENTIAL:
            for mu in range(last):
                extent, s = shape[mu], strides[mu]
                r = row
                while r < stop:
                    x = (r * length // s) % extent
                    end = stop
                    if mu == last - 1:  # a boundary row alone, the inner rows together
                        end = r + 1 if x == 0 or x == extent - 1 else min(stop, r - x + extent - 1)
                    up, up_at, down, down_at = _neighbours(phi, halo, split, offsets, mu,
                                                           r * length, x, extent, s)
                    _add_pairs(n, (r - row) * length, up, up_at, down, down_at,
                               (end - r) * length, mu == 0)
                    r = end
            # the last axis, along the rows
            if length == 1:
                for k in range(count):
                    site = base + k
                    up_end = halo[offsets[last, 0] + row + k] if split[last] else phi[site]
                    down_end = halo[offsets[last, 1] + row + k] if split[last] else phi[site]
                    n[k] = up_end + down_end if ndim == 1 else n[k] + (up_end + down_end)
            else:
                for k in range(stop - row):
                    ends[0, k], ends[1, k] = n[k * length], n[k * length + length - 1]
                _add_pairs(n, 1, phi, base + 2, phi, base, count - 2, ndim == 1)
                for k in range(stop - row):
                    line, first = row + k, (row + k) * length
                    final = first + length - 1
                    up_end = halo[offsets[last, 0] + line] if split[last] else phi[first]
                    down_end = halo[offsets[last, 1] + line] if split[last] else phi[final]
                    head = phi[first + 1] + down_end
                    tail = up_end + phi[final - 1]
                    if ndim == 1:
                        n[k * length], n[k * length + length - 1] = head, tail
                    else:
                        n[k * length] = ends[0, k] + head
                        n[k * length + length - 1] = ends[1, k] + tail
        f, m = phi[base:base + count], pi[base:base + count]
        if term == POTENTIAL:
            for j in range(count):
                m[j] = m[j] + (((f[j] * f[j]) * four_c4 + two_c2) * f[j]) * minus_c
        elif term == HOPPING:
            for j in range(count):
                m[j] = m[j] + (n[j] * minus_h) * minus_c
        else:
            for j in range(count):
                p = f[j]
                m[j] = m[j] + (n[j] * minus_h + ((p * p) * four_c4 + two_c2) * p) * minus_c
        upto = min(base + count - lag, q_stop)
        if upto > q_done:
            add_scaled(phi[q_done:upto], pi[q_done:upto], c)
            q_done = upto


@kernel(parallel=True)
def _momentum_update(phi, pi, halo, shape, split, offsets, term, minus_h, four_c4, two_c2,
                     minus_c):
    """P(c) of force term ``term`` (module docstring), the threads taking blocks of chunks."""
    chunks = _chunking(shape)[2]
    blocks = min(BLOCKS, chunks)
    for block in numba.prange(blocks):
        first, stop = block_range(block, blocks, chunks)
        _update_chunks(phi, pi, halo, shape, split, offsets, term, minus_h, four_c4, two_c2,
                       minus_c, first, stop, minus_c, 0, 0, 1)  # no Q: an empty range


@kernel(inline="always")
def _fused_block(phi, pi, halo, shape, split, offsets, term, minus_h, four_c4, two_c2,
                 minus_c, c, first_chunk, stop_chunk):
    """P(c) then Q(c_q = ``c``) on chunks first_chunk to stop_chunk - 1, the Q of the sites
    it may follow (:func:`_lagged_sites`); returns (lo, hi, q_first, q_stop), the Q of
    [lo, q_first) and [q_stop, hi) to be done by :func:`_rest_of_field_update` once every
    chunk's P is done."""
    lo, hi, q_first, q_stop, lag = _lagged_sites(first_chunk, stop_chunk, shape)
    _update_chunks(phi, pi, halo, shape, split, offsets, term, minus_h, four_c4, two_c2,
                   minus_c, first_chunk, stop_chunk, c, q_first, q_stop, lag)
    return lo, hi, q_first, q_stop


@kernel(inline="always")
def _rest_of_field_update(phi, pi, c, lo, hi, q_first, q_stop):
    """The Q(c) of a block's sites left by :func:`_fused_block`."""
    add_scaled(phi[lo:q_first], pi[lo:q_first], c)
    add_scaled(phi[q_stop:hi], pi[q_stop:hi], c)


@kernel(parallel=True)
def _momentum_and_field_update(phi, pi, halo, shape, split, offsets, term, minus_h, four_c4,
                               two_c2, minus_c, c, threads):
    """P(c) of force term ``term`` then Q(c_q = ``c``) in one pass (module docstring), each
    thread taking a block of chunks; the Q of the sites near the blocks' ends after every
    block's P (one block per thread of ``threads``: each block leaves two slices of direction 0
    to that second pass)."""
    chunks = _chunking(shape)[2]
    blocks = min(threads, chunks)
    left = np.empty((blocks, 4), np.int64)  # per block: lo, hi, q_first, q_stop
    for block in numba.prange(blocks):
        first, stop = block_range(block, blocks, chunks)
        lo, hi, q_first, q_stop = _fused_block(phi, pi, halo, shape, split, offsets, term,
                                               minus_h, four_c4, two_c2, minus_c, c, first,
                                               stop)
        left[block, 0], left[block, 1], left[block, 2], left[block, 3] = lo, hi, q_first, q_stop
    for block in numba.prange(blocks):
        _rest_of_field_update(phi, pi, c, left[block, 0], left[block, 1], left[block, 2],
                              left[block, 3])


@kernel(inline="always")
def _no_halo(phi, shape):
    """(halo, split, offsets) of a momentum update without split directions."""
    return phi[:0], np.zeros(shape.shape[0], np.bool_), np.zeros((shape.shape[0], 2), np.int64)


@kernel()
def _trajectory(phi, pi, kinds, terms, coefficients, shape, minus_h, four_c4, two_c2, threads):
    """A whole trajectory without split directions on ``threads`` threads: update k
    (lqcdflow.kernels.fused.FusedMD._updates) is P(coefficients[k, 0]) of force term terms[k],
    Q(coefficients[k, 0]), or that P then Q(coefficients[k, 1])."""
    halo, split, offsets = _no_halo(phi, shape)
    for k in range(kinds.shape[0]):
        c, c_q = coefficients[k, 0], coefficients[k, 1]
        if kinds[k] == P:
            _momentum_update(phi, pi, halo, shape, split, offsets, terms[k], minus_h, four_c4,
                             two_c2, -c)
        elif kinds[k] == PQ:
            _momentum_and_field_update(phi, pi, halo, shape, split, offsets, terms[k], minus_h,
                                       four_c4, two_c2, -c, c_q, threads)
        else:
            field_update(phi, pi, c)


@kernel(parallel=True)
def _trajectory_one_thread(phi, pi, kinds, terms, coefficients, shape, minus_h, four_c4,
                           two_c2):
    """:func:`_trajectory` in one thread, inside one parallel region: Numba's parallel runtime
    is entered once per trajectory instead of once per update (0.44 us each: a sixth of a
    64^2 step). The same loops compiled outside a parallel region vectorise worse (0.66x)."""
    halo, split, offsets = _no_halo(phi, shape)
    chunks = _chunking(shape)[2]
    for _ in numba.prange(1):
        for k in range(kinds.shape[0]):
            c, c_q = coefficients[k, 0], coefficients[k, 1]
            if kinds[k] == P:
                _update_chunks(phi, pi, halo, shape, split, offsets, terms[k], minus_h, four_c4,
                               two_c2, -c, 0, chunks, c, 0, 0, 1)  # no Q: an empty range
            elif kinds[k] == PQ:
                lo, hi, q_first, q_stop = _fused_block(phi, pi, halo, shape, split, offsets,
                                                       terms[k], minus_h, four_c4, two_c2,
                                                       -c, c_q, 0, chunks)
                _rest_of_field_update(phi, pi, c_q, lo, hi, q_first, q_stop)
            else:
                add_scaled(phi, pi, c)


def make(theory, threads):
    """The compiled kernels of ``theory`` with ``threads`` threads (lqcdflow.kernels.select)."""
    return Phi4Compiled(theory, threads)


class Phi4Compiled(CompiledMD):
    """The molecular dynamics of a :class:`lqcdflow.theories.phi4.Phi4` theory with the
    compiled kernels of this module (lqcdflow.kernels.compiled.CompiledMD)."""

    terms = TERMS
    fuses = True

    def whole_trajectory(self, field, pi, kinds, terms, coefficients):
        """CompiledMD.whole_trajectory: :func:`_trajectory_one_thread` or, with threads,
        :func:`_trajectory`."""
        arguments = (field.reshape(-1), pi.reshape(-1), kinds, terms, coefficients, self.shape,
                     *constants(self.theory.couplings, field.dtype))
        if self.threads == 1:
            _trajectory_one_thread(*arguments)
        else:
            _trajectory(*arguments, self.threads)
        return True

    def momentum_update(self, field, pi, term, c):
        """P(c) of force term ``term`` (module docstring), the faces exchanged first."""
        halo, offsets = term_halo(self, field, term)
        _momentum_update(field.reshape(-1), pi.reshape(-1), halo, self.shape, self.split,
                         offsets, term, *constants(self.theory.couplings, field.dtype), -c)

    def momentum_and_field_update(self, field, pi, term, c, c_q):
        """P(c) of force term ``term`` then Q(c_q) in one pass (module docstring), the faces
        exchanged first."""
        halo, offsets = term_halo(self, field, term)
        _momentum_and_field_update(field.reshape(-1), pi.reshape(-1), halo, self.shape,
                                   self.split, offsets, term,
                                   *constants(self.theory.couplings, field.dtype), -c, c_q,
                                   self.threads)


@kernel(inline="always")
def _local_action(p, n, couplings):
    """Phi4.local_action: (c4 phi^2 + c2) phi^2 - h phi n, couplings (h, c2, c4)."""
    h, c2, c4 = couplings
    p2 = p * p
    return (c4 * p2 + c2) * p2 - h * p * n


@kernel(inline="always")
def _propose(p, u, width, couplings):
    """Phi4.propose before its rounding to phi's dtype: phi + width (2u - 1)."""
    return p + width * (2.0 * u - 1.0)


@kernel(parallel=True)
def _metropolis(phi, n, sites, dofs, sweep, k0, k1, hits, width, couplings, changed, delta_s):
    """The Metropolis hits (compiled.metropolis_hits) at the flat ``sites`` of a group."""
    for k in numba.prange(sites.size):
        i = sites[k]
        count, change = metropolis_hits(phi, i, n[i], couplings, np.uint64(dofs[k]), sweep, k0,
                                        k1, hits, width, _local_action, _propose)
        changed[i], delta_s[i] = changed[i] + count, delta_s[i] + change


def make_metropolis(theory, threads, rng, hits, width):
    """The compiled metropolis updates of ``theory`` (lqcdflow.kernels.select.choose)."""
    return Phi4Local(theory, threads, "metropolis", rng, hits, width)


class Phi4Local(CompiledLocal):
    """Metropolis updates of a :class:`lqcdflow.theories.phi4.Phi4` theory with
    :func:`_metropolis` (lqcdflow.kernels.compiled.CompiledLocal)."""

    def update_sites(self, values, component, environment, sites, dofs, sweep, changed,
                     delta_s):
        c, dtype = self.theory.couplings, values.dtype
        couplings = (dtype.type(c.h), dtype.type(c.c2), dtype.type(c.c4))
        _metropolis(values, environment, sites, dofs, sweep, *self.key, self.hits,
                    np.float64(self.width), couplings, changed, delta_s)
