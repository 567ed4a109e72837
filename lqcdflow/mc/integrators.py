"""Symmetric symplectic integrators as schedules of momentum and field updates.

For H = sum pi^2 / 2 + S[phi] the two exact sub-flows are
    P(c):  pi  <- pi - c eps dS/dphi     (momentum update, one force evaluation),
    Q(c):  phi <- phi + c eps pi         (field update).
A scheme is one MD step of size eps written as a palindrome of P's and Q's whose
coefficients each add up to 1; a trajectory of n steps is the scheme repeated n times with
the P's that meet at step boundaries merged (one force evaluation saved per boundary).

Schemes
-------
leapfrog   P(1/2) Q(1) P(1/2)                                         order 2, 1 force/step
omelyan2   P(xi) Q(1/2) P(1 - 2 xi) Q(1/2) P(xi), xi = 0.1931833275037836
           (Omelyan, Mryglod, Folk, Comput. Phys. Commun. 151 (2003) 272, 2nd-order minimum
           norm)                                                      order 2, 2 forces/step
omelyan4   P(v) Q(r) P(l) Q(t) P(1/2 - l - v) Q(1 - 2(t + r)) P(1/2 - l - v) Q(t) P(l) Q(r) P(v)
           r = 0.2539785108410595, t = -0.03230286765269967, v = 0.08398315262876693,
           l = 0.6822365335719091 (4th-order minimum norm, 11 stages; Takaishi and
           de Forcrand, Phys. Rev. E 73 (2006) 036706, "4MN5FV")      order 4, 5 forces/step
"""

from dataclasses import dataclass

import numpy as np

OMELYAN_XI = 0.1931833275037836
CHUNK_SITES = 1 << 15  # sites per chunk of the P and Q updates on CPUs (256 KiB of float64)


@dataclass(frozen=True)
class Update:
    """One sub-flow of an MD step: ``kind`` "P" (momenta) or "Q" (field), of size
    ``coefficient`` eps."""

    kind: str
    coefficient: float

    def __str__(self):
        return f"{self.kind}({self.coefficient:.16g})"


@dataclass(frozen=True)
class Scheme:
    """A symmetric integrator: the updates of one MD step, its name and its order in eps."""

    name: str
    order: int
    step: tuple

    def schedule(self, n_steps):
        """The updates of ``n_steps`` MD steps, adjacent updates of the same kind merged."""
        merged = []
        for update in self.step * n_steps:
            if merged and merged[-1].kind == update.kind:
                merged[-1] = Update(update.kind, merged[-1].coefficient + update.coefficient)
            else:
                merged.append(update)
        return merged

    def force_evaluations(self, n_steps):
        """Force evaluations in a trajectory of ``n_steps`` steps."""
        return sum(u.kind == "P" for u in self.schedule(n_steps))

    def describe(self, n_steps):
        """A printable schedule, e.g. ``leapfrog x2: P(0.5) Q(1) P(1) Q(1) P(0.5)``."""
        return f"{self.name} x{n_steps}: " + " ".join(map(str, self.schedule(n_steps)))


def leapfrog():
    return Scheme("leapfrog", 2, (Update("P", 0.5), Update("Q", 1.0), Update("P", 0.5)))


def omelyan2(xi=OMELYAN_XI):
    return Scheme("omelyan2", 2, (Update("P", xi), Update("Q", 0.5), Update("P", 1 - 2 * xi),
                                  Update("Q", 0.5), Update("P", xi)))


def omelyan4():
    r, t = 0.2539785108410595, -0.03230286765269967
    v, l = 0.08398315262876693, 0.6822365335719091
    mid_p, mid_q = 0.5 - l - v, 1 - 2 * (t + r)
    return Scheme("omelyan4", 4, (Update("P", v), Update("Q", r), Update("P", l), Update("Q", t),
                                  Update("P", mid_p), Update("Q", mid_q), Update("P", mid_p),
                                  Update("Q", t), Update("P", l), Update("Q", r),
                                  Update("P", v)))


SCHEMES = {"leapfrog": leapfrog, "omelyan2": omelyan2, "omelyan4": omelyan4}


def integrate(phi, pi, force, scheme, n_steps, step_size, xp, work=None):
    """Run the MD trajectory in place: ``phi`` and ``pi`` are overwritten.

    Parameters
    ----------
    phi, pi : C-contiguous arrays
        Field and conjugate momenta (local sub-lattice).
    force : callable(phi, out) -> array
        dS/dphi written into ``out``.
    scheme : Scheme
    n_steps : int
    step_size : float
        eps = trajectory length / n_steps.
    xp : module
        ``numpy`` or ``cupy``.
    work : array, optional
        Scratch array of phi's shape (allocated once per call otherwise).
    """
    if not (phi.flags.c_contiguous and pi.flags.c_contiguous):
        raise ValueError("integrate updates phi and pi in place: they must be C-contiguous")
    work = xp.empty_like(phi) if work is None else work
    if xp is np and phi.size > CHUNK_SITES:
        scratch = np.empty(CHUNK_SITES, dtype=phi.dtype)
    else:
        scratch = work  # one chunk: whole-field operations (always on GPUs)
    for update in scheme.schedule(n_steps):
        c = update.coefficient * step_size
        if update.kind == "P":
            _axpy(pi, -c, force(phi, out=work), scratch, xp)
        else:
            _axpy(phi, c, pi, scratch, xp)


def _axpy(y, a, x, scratch, xp):
    """y += a x, in chunks of ``scratch``'s size when it is smaller than y (y contiguous).

    Forming a x for the whole field before adding it would write a field-sized temporary
    and read it back from L3 or memory; a chunk of L2 size is still in cache when it is added
    (CHUNK_SITES). ``scratch`` may be x itself. The bits are the same whatever the chunks:
    y + a x is computed for each site alone, and y - c F equals y + (-c) F exactly.
    """
    if scratch.size >= y.size:
        y += xp.multiply(x, a, out=scratch)
        return
    y_flat, x_flat = y.reshape(-1), x.reshape(-1)
    for start in range(0, y.size, scratch.size):
        stop = min(start + scratch.size, y.size)
        ax = xp.multiply(x_flat[start:stop], a, out=scratch[:stop - start])
        y_flat[start:stop] += ax
