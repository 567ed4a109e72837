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
directions a whole trajectory is one compiled call (:func:`_trajectory`), so small lattices
are not bound by Python's dispatch.
"""

import numba
import numpy as np

from lqcdflow.kernels.compiled import CompiledLocal, CompiledMD, add_scaled, field_update, \
    metropolis_hits
from lqcdflow.kernels.jit import kernel

HOPPING, POTENTIAL = 1, 2  # bits of a force term


@kernel(inline="always")
def _blocks(shape):
    """The blocks of sites of a momentum update: the time slices (the whole field in 1D)."""
    return shape[0] if shape.shape[0] > 1 else 1


@kernel(inline="always")
def _update_block(phi, pi, halo, shape, split, offsets, term, minus_h, four_c4, two_c2, minus_c,
                  block):
    """P(c) of force term ``term`` (module docstring) on block ``block`` (a time slice, see
    :func:`_blocks`) of the flat local fields, in place.

    Line by line along the last axis: the neighbour sum of a line is accumulated in a
    line-sized buffer (in L1), one direction after the other in the order of the module
    docstring, each a contiguous loop that the compiler vectorises; the neighbour lines of
    direction mu < D - 1 are those of the field at +-stride_mu, or across the boundary the
    field's own wrap or the received face. Then the force and the update of the line.
    """
    ndim = shape.shape[0]
    last = ndim - 1
    length = shape[last]
    strides = np.empty(ndim, np.int64)
    stride = 1
    for mu in range(last, -1, -1):
        strides[mu] = stride
        stride *= shape[mu]
    per_block = phi.size // length // _blocks(shape)
    coords = np.zeros(ndim, np.int64)  # of the current line; coords[last] is unused
    if ndim > 1:
        coords[0] = block
    n = np.empty(length, phi.dtype)
    for line in range(block * per_block, (block + 1) * per_block):
        base = line * length
        if term != POTENTIAL:
            for mu in range(last):
                x, extent, s = coords[mu], shape[mu], strides[mu]
                face = (base // (s * extent)) * s + base % s
                up, up_at = phi, base + s
                if x == extent - 1:
                    if split[mu]:
                        up, up_at = halo, offsets[mu, 0] + face
                    else:
                        up_at = base - (extent - 1) * s
                down, down_at = phi, base - s
                if x == 0:
                    if split[mu]:
                        down, down_at = halo, offsets[mu, 1] + face
                    else:
                        down_at = base + (extent - 1) * s
                # views indexed from 0: the compiler then knows every index is >= 0 (no
                # wraparound test per element) and vectorises the loop
                u, d = up[up_at:up_at + length], down[down_at:down_at + length]
                if mu == 0:
                    for j in range(length):
                        n[j] = u[j] + d[j]
                else:
                    for j in range(length):
                        n[j] = n[j] + (u[j] + d[j])
            # the last direction, along the line
            first, final = phi[base], phi[base + length - 1]
            up_end = halo[offsets[last, 0] + line] if split[last] else first
            down_end = halo[offsets[last, 1] + line] if split[last] else final
            if length == 1:
                pair = up_end + down_end
                n[0] = pair if ndim == 1 else n[0] + pair
            else:
                head = phi[base + 1] + down_end
                tail = up_end + phi[base + length - 2]
                u, d = phi[base + 2:base + length], phi[base:base + length - 2]
                if ndim == 1:
                    for j in range(length - 2):
                        n[j + 1] = u[j] + d[j]
                    n[0], n[length - 1] = head, tail
                else:
                    for j in range(length - 2):
                        n[j + 1] = n[j + 1] + (u[j] + d[j])
                    n[0], n[length - 1] = n[0] + head, n[length - 1] + tail
        f, m = phi[base:base + length], pi[base:base + length]
        if term == POTENTIAL:
            for j in range(length):
                m[j] = m[j] + (((f[j] * f[j]) * four_c4 + two_c2) * f[j]) * minus_c
        elif term == HOPPING:
            for j in range(length):
                m[j] = m[j] + (n[j] * minus_h) * minus_c
        else:
            for j in range(length):
                p = f[j]
                m[j] = m[j] + (n[j] * minus_h + ((p * p) * four_c4 + two_c2) * p) * minus_c
        mu = ndim - 2  # the next line's coordinates
        while mu >= 0:
            coords[mu] += 1
            if coords[mu] < shape[mu]:
                break
            coords[mu] = 0
            mu -= 1


@kernel(parallel=True)
def _momentum_update(phi, pi, halo, shape, split, offsets, term, minus_h, four_c4, two_c2,
                     minus_c):
    """P(c) of force term ``term`` (module docstring), the threads taking blocks."""
    for block in numba.prange(_blocks(shape)):
        _update_block(phi, pi, halo, shape, split, offsets, term, minus_h, four_c4, two_c2,
                      minus_c, block)


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
                for block in range(_blocks(shape)):
                    _update_block(phi, pi, halo, shape, split, offsets, terms[k], minus_h,
                                  four_c4, two_c2, -coefficients[k], block)
            else:
                add_scaled(phi, pi, coefficients[k])


def make(theory, threads):
    """The compiled kernels of ``theory`` with ``threads`` threads (lqcdflow.kernels.select)."""
    return Phi4Compiled(theory, threads)


class Phi4Compiled(CompiledMD):
    """The molecular dynamics of a :class:`lqcdflow.theories.phi4.Phi4` theory with the
    compiled kernels of this module (lqcdflow.kernels.compiled.CompiledMD)."""

    terms = {"action": HOPPING | POTENTIAL, "hopping": HOPPING, "potential": POTENTIAL}

    def _constants(self, dtype):
        """(-h, 4 c4, 2 c2) rounded to ``dtype``, as NumPy rounds a Python float operand."""
        c = self.theory.couplings
        return tuple(dtype.type(v) for v in (-c.h, 4.0 * c.c4, 2.0 * c.c2))

    def run(self, field, pi, kinds, terms, coefficients):
        """Without split directions the whole trajectory in one call, else update by
        update."""
        if self.split.any():
            super().run(field, pi, kinds, terms, coefficients)
            return
        trajectory = _trajectory_one_thread if self.threads == 1 else _trajectory
        trajectory(field.reshape(-1), pi.reshape(-1), kinds, terms, coefficients, self.shape,
                   *self._constants(field.dtype))

    def momentum_update(self, field, pi, term, c):
        """P(c) of force term ``term`` (module docstring), the faces exchanged first."""
        halo, offsets = self.halo(field, (1, -1))
        _momentum_update(field.reshape(-1), pi.reshape(-1), halo, self.shape, self.split,
                         offsets, term, *self._constants(field.dtype), -c)


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
