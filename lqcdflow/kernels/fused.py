"""What the fused molecular-dynamics kernels of every kind share (Numba on CPUs,
lqcdflow.kernels.compiled; CUDA C on GPUs, lqcdflow.kernels.device): a trajectory's updates
(lqcdflow.mc.integrators.trajectory_updates) as arrays, run one after the other through a
theory's fused momentum and field updates, and the faces of the split directions packed into
one halo array for them.
"""

import numpy as np

from lqcdflow.mc.integrators import trajectory_updates

P, Q, PQ = 0, 1, 2  # kinds of updates: P(c), Q(c), P(c) then Q(c_q) (FusedMD._updates)


class FusedMD:
    """A theory's fused molecular dynamics; subclasses supply ``terms`` ({force term name:
    code}), ``momenta(rng, draw)`` (Theory.momenta's bits), ``momentum_update(field, pi,
    term, c)``, P(c) of a force term in place, and ``field_update(field, pi, c)``, Q(c); where
    ``fuses``, ``momentum_and_field_update(field, pi, term, c, c_q)``, P(c) then Q(c_q) in one
    pass.

    Parameters
    ----------
    theory : lqcdflow.theories.base.Theory
    """

    terms = {"action": 0}
    fuses = False  # the kernels have momentum_and_field_update (update kind PQ)

    def __init__(self, theory):
        self.theory, self.lattice = theory, theory.lattice
        self.shape = np.asarray(self.lattice.local_shape, np.int64)
        self.split = np.asarray([g > 1 for g in self.lattice.grid], np.bool_)
        self._plan = None  # (levels, trajectory length, dtype; the updates as arrays)
        self._halos = {}  # (signs, values per site, dtype): halo, offsets, its faces

    def integrate(self, field, pi, levels, trajectory_length):
        """Run the MD trajectory of ``levels`` (lqcdflow.mc.integrators.trajectory_updates) in
        place on the C-contiguous ``field`` and ``pi``."""
        if not (field.flags.c_contiguous and pi.flags.c_contiguous):
            raise ValueError("integrate updates the field and pi in place: they must be "
                             "C-contiguous")
        self.run(field, pi, *self._updates(levels, trajectory_length, pi.dtype))

    def run(self, field, pi, kinds, terms, coefficients):
        """Apply the updates in order (:meth:`_updates`): P(c) of force term ``term``, Q(c),
        or P(c) then Q(c_q). Without split directions, a theory with
        :meth:`whole_trajectory` runs them in one compiled call, so that small lattices are
        not bound by Python's dispatch."""
        if not self.split.any() and self.whole_trajectory(field, pi, kinds, terms,
                                                          coefficients):
            return
        for kind, term, (c, c_q) in zip(kinds, terms, coefficients):
            if kind == Q:
                self.field_update(field, pi, c)
            elif kind == P:
                self.momentum_update(field, pi, term, c)
            else:
                self.momentum_and_field_update(field, pi, term, c, c_q)

    def whole_trajectory(self, field, pi, kinds, terms, coefficients):
        """The updates of :meth:`run` in one compiled call, on a lattice without split
        directions; False where the theory has no such kernel."""
        return False

    def _updates(self, levels, trajectory_length, dtype):
        """The trajectory's updates as NumPy arrays, made once for the same levels, length and
        dtype: kinds (P, Q, or, where the kernels fuse, PQ for a P followed by a Q), force
        term codes (0 for Q), coefficients (updates, 2) in ``dtype``: c, and a PQ's c_q."""
        key = (levels, trajectory_length, dtype)
        if self._plan is None or self._plan[0] != key:
            codes = [self.terms[level.name] for level in levels]
            kinds, terms, coefficients = [], [], []
            for kind, k, c in trajectory_updates(levels, trajectory_length):
                if kind == "Q" and self.fuses and kinds and kinds[-1] == P:
                    kinds[-1], coefficients[-1] = PQ, (coefficients[-1][0], c)
                else:
                    kinds.append(P if kind == "P" else Q)
                    terms.append(codes[k] if kind == "P" else 0)
                    coefficients.append((c, 0.0))
            self._plan = (key, (np.array(kinds, np.int64), np.array(terms, np.int64),
                                np.array(coefficients, dtype)))
        return self._plan[1]

    def face_offsets(self, signs):
        """offsets[mu, k]: where the face beyond the block in direction signs[k] e_mu starts in
        the halo of :meth:`halo`, counted in sites (the split directions' faces one after the
        other, each in C order without axis mu; 0 for unsplit directions)."""
        offsets = np.zeros((self.lattice.ndim, len(signs)), np.int64)
        start = 0
        for mu in np.flatnonzero(self.split):
            for k in range(len(signs)):
                offsets[mu, k] = start
                start += self.lattice.local_volume // self.shape[mu]
        return offsets

    def halo(self, field, signs):
        """(halo, offsets): for each split direction mu and sign in ``signs``, the face of
        ``field`` beyond the block in direction sign e_mu (the neighbour's plane, see
        Lattice._start_exchange), flattened one after the other (an array of the lattice's
        backend, kept: valid until the next halo of the same signs and field layout);
        offsets[mu, k] is where the face of (mu, signs[k]) starts in the halo, in values
        (:meth:`face_offsets` times the values per site)."""
        values = field.size // self.lattice.local_volume
        key = (tuple(signs), values, field.dtype)
        if key not in self._halos:
            offsets = self.face_offsets(signs) * values
            split = [int(mu) for mu in np.flatnonzero(self.split)]
            size = {mu: self.lattice.local_volume // self.shape[mu] * values for mu in split}
            halo = self.lattice.xp.empty(sum(size.values()) * len(signs), field.dtype)
            faces = {(mu, sign): halo[offsets[mu, k]:offsets[mu, k] + size[mu]]
                     for mu in split for k, sign in enumerate(signs)}
            self._halos[key] = halo, offsets, faces
        halo, offsets, faces = self._halos[key]
        self.lattice.exchange_faces(field, faces)
        return halo, offsets
