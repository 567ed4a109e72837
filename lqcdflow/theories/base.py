"""What a theory declares, and what the rest of lqcdflow asks of it.

A theory lives on a :class:`~lqcdflow.parallel.Lattice` and owns the formulas: its field, cold
and hot starts, momenta, kinetic energy, the field update of the molecular dynamics, the force
and the observables it measures. Samplers, integrators, files and the analysis only call these
(they name no theory), so that adding a theory is one module in ``lqcdflow/theories`` and one
entry of the registry (:mod:`lqcdflow.theories`).

Hamiltonian of HMC for a field U with momenta P (real coordinates of the tangent space, per
site a real array of shape ``momentum_shape``):

    H = sum_x [ k(P_x) + s_x(U) ],   k(P_x) = (1/2) sum_a P_{x,a}^2,   S(U) = sum_x s_x(U),

evolved by the two exact sub-flows of the integrators,

    P-update:  P <- P - eps F(U),   F = dS/dU along the coordinates of P (:meth:`Theory.force`);
    Q-update:  U <- Q(eps P) U      (:meth:`Theory.update_field`; U <- U + eps P for fields
                                    in a vector space, as here by default).
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from lqcdflow.rng import STREAM_MOMENTA
from lqcdflow.kernels.blas import axpy


@dataclass(frozen=True)
class FieldSpec:
    """The description of a lattice field: one per theory, used by files and checkpoints.

    Attributes
    ----------
    name : str
        Dataset name in files (``fields/<name>``, ``configurations/<name>``).
    site_shape : tuple of int
        Numbers per site, trailing the lattice axes (phi^4: ``()``; U(1) angles: ``(D,)``).
    complex : bool
        Complex numbers (of the run's precision) instead of real ones.
    description : str
        What the numbers are, for ``lqcdflow info`` and file attributes.
    """

    name: str
    site_shape: tuple
    complex: bool = False
    description: str = ""

    def dtype(self, real_dtype):
        """The NumPy dtype of the field for a run in precision ``real_dtype``."""
        real = np.dtype(real_dtype)
        return np.result_type(real, np.complex64) if self.complex else real


@dataclass(frozen=True)
class Observable:
    """A quantity measured on every measured configuration.

    Attributes
    ----------
    name : str
        Series name in ensemble files (``observables/<name>``).
    shape : tuple of int
        Shape of one measurement (``()`` for a number).
    description : str
        What it is, with its formula; stored as the dataset's attribute.
    complex : bool
        Complex-valued (stored as complex128).
    """

    name: str
    shape: tuple = ()
    description: str = ""
    complex: bool = False

    @property
    def dtype(self):
        return np.dtype(np.complex128 if self.complex else np.float64)


class Theory(ABC):
    """The protocol of a lattice theory on a domain-decomposed lattice (see module docstring).

    Subclasses set ``field`` (a FieldSpec), ``momentum_shape`` and ``observables`` (tuple of
    Observable), and implement :meth:`action_density`, :meth:`force`, :meth:`hot_start`,
    :meth:`measure`; those sampled by local updates also the methods of the local-update
    protocol (:mod:`lqcdflow.mc.local`). Fields in a vector space (phi^4, U(1) angles) keep
    the defaults of the momenta, the kinetic energy and the additive field update;
    group-valued fields override :meth:`update_field`, :meth:`cold_start` and
    :meth:`normalize`.
    """

    field: FieldSpec
    momentum_shape: tuple
    observables: tuple

    def __init__(self, lattice):
        self.lattice = lattice

    # ------------------------------------------------------------------ configurations
    def zeros(self):
        """A local field of zeros of this theory's site shape and dtype."""
        return self.lattice.zeros(self.field.site_shape,
                                  self.field.dtype(self.lattice.backend.dtype))

    def cold_start(self):
        """The ordered start: the zero field (override for group-valued fields)."""
        return self.zeros()

    @abstractmethod
    def hot_start(self, rng):
        """A disordered start drawn per degree of freedom from ``rng`` (CounterRNG)."""

    def normalize(self, field):
        """``field`` mapped back onto its manifold after a trajectory (angles into
        [-pi, pi), matrices reunitarised); the identity by default. May work in place."""
        return field

    # ------------------------------------------------------------------ molecular dynamics
    def momenta(self, rng, draw):
        """Momenta of trajectory ``draw``: P_{x,a} ~ N(0, 1) per site x and component a,
        from the counter RNG (stream STREAM_MOMENTA, counter = global degree of freedom)."""
        lat = self.lattice
        pi = rng.normal(lat.dof_index(self.momentum_shape), draw, STREAM_MOMENTA, lat.xp)
        return pi.astype(lat.backend.dtype)

    def kinetic_density(self, pi):
        """k_x = (1/2) sum_a P_{x,a}^2 (an array of the lattice's local shape)."""
        k = 0.5 * pi * pi
        return k.sum(axis=tuple(range(self.lattice.ndim, pi.ndim))) if self.momentum_shape else k

    @abstractmethod
    def action_density(self, field):
        """s_x with S = sum_x s_x (an array of the lattice's local shape)."""

    def action(self, field):
        """S[field], summed reproducibly (identical on every rank and decomposition)."""
        return self.lattice.sum(self.action_density(field))

    def sum_observables(self, field):
        """{name: value} of the observables that are one global sum each (here the action;
        theories add theirs), with the names of :meth:`measure`. On a
        :class:`~lqcdflow.flows.torch_lattice.TorchLattice` the field is a batch and every
        value a tensor with one entry per sample: flow chains measure their proposals a block
        at a time with it."""
        return {"action": self.action(field)}

    @abstractmethod
    def force(self, field, out=None):
        """F = dS/dU in the coordinates of the momenta (array of the momenta's shape);
        written into ``out`` when given."""

    def force_terms(self):
        """The force split into terms F = F_1 + F_2 + ..., for nested integrators (outermost,
        slowest level first): a tuple of (name, callable like :meth:`force`). One term, the
        whole force, by default."""
        return (("action", self.force),)

    def update_field(self, field, pi, eps):
        """The Q-update, in place: U <- U + eps P (fields in a vector space)."""
        axpy(field, eps, pi, self.lattice.xp)

    # ------------------------------------------------------------------ measurements
    @abstractmethod
    def measure(self, field):
        """{name: value} of every declared Observable, identical on all ranks (collective)."""

    def describe(self):
        """One line: the theory and its couplings."""
        return type(self).__name__

    def health(self):
        """A few words on the numerical health of the chain for progress lines (e.g. the
        drift from the group manifold corrected so far); empty by default."""
        return ""

