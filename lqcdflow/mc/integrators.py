"""Symmetric symplectic integrators as schedules of momentum and field updates.

For H = sum P^2 / 2 + S[U] the two exact sub-flows are
    P(c):  P <- P - c eps F(U)           (momentum update, one force evaluation),
    Q(c):  U <- Q(c eps P) U             (field update of the theory: U + c eps P for phi^4
                                          and U(1) angles, exp(i c eps P) U for SU(N)).
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

Nested time scales (Sexton and Weingarten, Nucl. Phys. B 380 (1992) 665): for an action split
into terms S = S_1 + S_2 + ... (force F_1 + F_2 + ...), level 1 integrates H_1 = S_1 with its
scheme and n_1 steps, and each of its Q(c) is replaced by a whole trajectory of length c eps_1
of level 2 (S_2 with n_2 steps), and so on; the innermost level's Q updates the field. Cheap,
large forces go inside (more evaluations), expensive, small ones outside.
"""

from dataclasses import dataclass
from typing import Callable

from lqcdflow.kernels.blas import axpy

OMELYAN_XI = 0.1931833275037836


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


@dataclass(frozen=True)
class Level:
    """One time scale of a (nested) integrator.

    Attributes
    ----------
    scheme : Scheme
    n_steps : int
        MD steps per trajectory of this level: per trajectory of HMC for the outermost level,
        per Q-update of the level above for the others.
    force : callable(field, out) -> array
        The force term of this level.
    name : str
        The force term's name (for printing).
    """

    scheme: Scheme
    n_steps: int
    force: Callable
    name: str = "action"


def levels_of(theory, scheme, n_steps):
    """Levels of ``scheme`` for a theory: one level of its whole force for an int
    ``n_steps``, or one level per force term (``theory.force_terms()``, outermost first) with
    ``n_steps[k]`` steps at level k."""
    if isinstance(n_steps, int):
        return (Level(scheme, n_steps, theory.force),)
    terms = theory.force_terms()
    if len(n_steps) != len(terms):
        raise ValueError(f"{len(n_steps)} levels of steps for {len(terms)} force terms "
                         f"({', '.join(name for name, _ in terms)})")
    return tuple(Level(scheme, n, force, name) for n, (name, force) in zip(n_steps, terms))


def describe_levels(levels, trajectory_length):
    """A printable line per level: its force term, scheme, steps and forces per trajectory."""
    lines, calls = [], 1
    for k, level in enumerate(levels):
        forces = level.scheme.force_evaluations(level.n_steps)
        per_q = sum(u.kind == "Q" for u in level.scheme.schedule(level.n_steps))
        lines.append(f"level {k + 1} ({level.name}): {level.scheme.describe(1)}, "
                     f"{level.n_steps} steps, {calls * forces} forces/traj")
        calls *= per_q
    eps = trajectory_length / levels[0].n_steps
    return "; ".join(lines) + f"; outer step {eps:.6g}"


def trajectory_updates(levels, trajectory_length):
    """The updates of one trajectory in the order they are applied: ("P", k, c) for
    pi <- pi - c F_k(U), F_k the force of level k, and ("Q", None, c) for U <- Q(c pi) U.

    Level 1's step is eps_1 = tau / n_1; each Q(c) of a level above the innermost is a whole
    trajectory of length c of the next level. Every path through the updates (NumPy or
    compiled kernels) takes its coefficients from here, so they are the same numbers.
    """
    updates = []

    def level(k, length):
        eps = length / levels[k].n_steps
        for update in levels[k].scheme.schedule(levels[k].n_steps):
            c = update.coefficient * eps
            if update.kind == "P":
                updates.append(("P", k, c))
            elif k + 1 < len(levels):
                level(k + 1, c)
            else:
                updates.append(("Q", None, c))

    level(0, trajectory_length)
    return updates


def integrate(field, pi, levels, trajectory_length, update_field, xp):
    """Run the MD trajectory (:func:`trajectory_updates`) in place with array operations:
    ``field`` and ``pi`` are overwritten.

    Parameters
    ----------
    field, pi : C-contiguous arrays
        Field and conjugate momenta (local sub-lattice).
    levels : sequence of Level
        Outermost first (one level for an unsplit action).
    trajectory_length : float
        tau; level 1's step is eps_1 = tau / n_1.
    update_field : callable(field, pi, eps)
        The theory's Q-update, in place.
    xp : module
        ``numpy`` or ``cupy``.
    """
    if not (field.flags.c_contiguous and pi.flags.c_contiguous):
        raise ValueError("integrate updates the field and pi in place: they must be "
                         "C-contiguous")
    work = xp.empty_like(pi)
    for kind, k, c in trajectory_updates(levels, trajectory_length):
        if kind == "P":
            axpy(pi, -c, levels[k].force(field, out=work), xp)
        else:
            update_field(field, pi, c)
