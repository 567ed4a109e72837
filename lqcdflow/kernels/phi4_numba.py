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
from lqcdflow.kernels.jit import kernel
from lqcdflow.kernels.phi4_terms import HOPPING, POTENTIAL, TERMS, constants

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
                   minus_c, first_chunk, stop_chunk):
    """P(c) of force term ``term`` (module docstring) on the chunks first_chunk to
    stop_chunk - 1 (:func:`_chunking`) of the flat local fields, in place.

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
    rows_per_plane = shape[last - 1] if ndim > 1 else 1
    chunk_rows, per_plane, _ = _chunking(shape)
    n = np.empty(chunk_rows * length, phi.dtype)
    ends = np.empty((2, chunk_rows), phi.dtype)  # the sums at row ends before the last axis
    for chunk in range(first_chunk, stop_chunk):
        plane, part = chunk // per_plane, chunk % per_plane
        row = plane * rows_per_plane + part * chunk_rows
        stop = min(row + chunk_rows, (plane + 1) * rows_per_plane)
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


@kernel(parallel=True)
def _momentum_update(phi, pi, halo, shape, split, offsets, term, minus_h, four_c4, two_c2,
                     minus_c):
    """P(c) of force term ``term`` (module docstring), the threads taking blocks of chunks."""
    chunks = _chunking(shape)[2]
    blocks = min(BLOCKS, chunks)
    for block in numba.prange(blocks):
        first, stop = block_range(block, blocks, chunks)
        _update_chunks(phi, pi, halo, shape, split, offsets, term, minus_h, four_c4, two_c2,
                       minus_c, first, stop)


@kernel(inline="always")
def _no_halo(phi, shape):
    """(halo, split, offsets) of a momentum update without split directions."""
    return phi[:0], np.zeros(shape.shape[0], np.bool_), np.zeros((shape.shape[0], 2), np.int64)


@kernel()
def _trajectory(phi, pi, kinds, terms, coefficients, shape, minus_h, four_c4, two_c2):
    """A whole trajectory without split directions: update k is P(coefficients[k]) of force
    term terms[k] where kinds[k] == 0, else Q(coefficients[k])."""
    halo, split, offsets = _no_halo(phi, shape)
    for k in range(kinds.shape[0]):
        if kinds[k] == 0:
            _momentum_update(phi, pi, halo, shape, split, offsets, terms[k], minus_h, four_c4,
                             two_c2, -coefficients[k])
        else:
            field_update(phi, pi, coefficients[k])


@kernel(parallel=True)
def _trajectory_one_thread(phi, pi, kinds, terms, coefficients, shape, minus_h, four_c4,
                           two_c2):
    """:func:`_trajectory` in one thread, inside one parallel region: Numba's parallel runtime
    is entered once per trajectory instead of once per update (0.44 us each: a sixth of a
    64^2 step). The same loops compiled outside a parallel region vectorise worse (0.66x)."""
    halo, split, offsets = _no_halo(phi, shape)
    for _ in numba.prange(1):
        for k in range(kinds.shape[0]):
            if kinds[k] == 0:
                _update_chunks(phi, pi, halo, shape, split, offsets, terms[k], minus_h, four_c4,
                               two_c2, -coefficients[k], 0, _chunking(shape)[2])
            else:
                add_scaled(phi, pi, coefficients[k])


def make(theory, threads):
    """The compiled kernels of ``theory`` with ``threads`` threads (lqcdflow.kernels.select)."""
    return Phi4Compiled(theory, threads)


class Phi4Compiled(CompiledMD):
    """The molecular dynamics of a :class:`lqcdflow.theories.phi4.Phi4` theory with the
    compiled kernels of this module (lqcdflow.kernels.compiled.CompiledMD)."""

    terms = TERMS

    def whole_trajectory(self, field, pi, kinds, terms, coefficients):
        """CompiledMD.whole_trajectory: :func:`_trajectory_one_thread` or, with threads,
        :func:`_trajectory`."""
        trajectory = _trajectory_one_thread if self.threads == 1 else _trajectory
        trajectory(field.reshape(-1), pi.reshape(-1), kinds, terms, coefficients, self.shape,
                   *constants(self.theory.couplings, field.dtype))
        return True

    def momentum_update(self, field, pi, term, c):
        """P(c) of force term ``term`` (module docstring), the faces exchanged first."""
        halo, offsets = self.halo(field, (1, -1))
        _momentum_update(field.reshape(-1), pi.reshape(-1), halo, self.shape, self.split,
                         offsets, term, *constants(self.theory.couplings, field.dtype), -c)


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
