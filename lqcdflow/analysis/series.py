"""In-memory Monte Carlo series of an ensemble: its replicas and their thermalisation cuts.

An ensemble (one set of lattice and theory parameters) is sampled by one or more replicas,
independent Markov chains. Each replica holds the measured observables with the trajectory
numbers they were taken after, and the per-trajectory Monte Carlo record (``accepted``,
``delta_H``). Trajectories up to the replica's thermalisation cut are dropped from the
analysis; they stay available for the Monte Carlo history plots.
"""

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from lqcdflow.analysis import AnalysisError


@dataclass(frozen=True)
class Replica:
    """The series of one Markov chain (one file or several continuation segments).

    Attributes
    ----------
    name : str
        "r0", "r1", ... in the order the chains are found.
    files : tuple of str
        The files (segments) it was read from, in trajectory order.
    trajectory : (n,) int array
        Increasing trajectory numbers of the measurements.
    observables : dict
        Observable name -> (n,) array, or (n, L_0) for ``correlator``.
    mc_trajectory : (k,) int array
        Increasing trajectory numbers of the Monte Carlo record.
    mc : dict
        ``accepted`` and ``delta_H`` (those that were recorded) -> (k,) arrays.
    thermalization : int
        Trajectories <= thermalization are dropped by :meth:`after_thermalization`.
    thermalization_source : str
        Where the cut comes from ("run file", "given", "detected", ...).
    """

    name: str
    files: tuple
    trajectory: np.ndarray
    observables: dict
    mc_trajectory: np.ndarray
    mc: dict
    thermalization: int = 0
    thermalization_source: str = "none"

    @property
    def trajectories(self):
        """(first, last) trajectory number of everything recorded."""
        firsts = [a[0] for a in (self.trajectory, self.mc_trajectory) if len(a)]
        lasts = [a[-1] for a in (self.trajectory, self.mc_trajectory) if len(a)]
        return int(min(firsts)), int(max(lasts))

    @property
    def n_kept(self):
        """The number of measurements after the thermalisation cut."""
        return int(np.sum(self.trajectory > self.thermalization))

    def with_thermalization(self, cut, source):
        """This replica with thermalisation cut ``cut`` (a trajectory number)."""
        return dataclasses.replace(self, thermalization=int(cut), thermalization_source=source)

    def after_thermalization(self):
        """This replica restricted to trajectories > thermalization (idempotent)."""
        keep = self.trajectory > self.thermalization
        keep_mc = self.mc_trajectory > self.thermalization
        return dataclasses.replace(
            self, trajectory=self.trajectory[keep],
            observables={k: v[keep] for k, v in self.observables.items()},
            mc_trajectory=self.mc_trajectory[keep_mc],
            mc={k: v[keep_mc] for k, v in self.mc.items()})


@dataclass(frozen=True)
class Ensemble:
    """Replicas of one ensemble and its parameters.

    Attributes
    ----------
    replicas : list of Replica
    shape : tuple of int
        Lattice extents (L_0, L_1, ...); direction 0 is time.
    theory : dict
        The run's ``theory.*`` parameters without the prefix, e.g. {"form": "hopping",
        "kappa": 0.2, "lambda": 0.0}; keys with no value are left out.
    """

    replicas: list
    shape: tuple
    theory: dict = field(default_factory=dict)

    @property
    def volume(self):
        return math.prod(self.shape)

    @property
    def files(self):
        return [f for r in self.replicas for f in r.files]

    @property
    def measurement_interval(self):
        """The smallest number of trajectories between two measurements of a replica."""
        gaps = [np.diff(r.trajectory) for r in self.replicas if len(r.trajectory) > 1]
        return int(min(g.min() for g in gaps)) if gaps else 1

    def has(self, name):
        """Whether every replica holds observable or Monte Carlo series ``name``."""
        return all(name in r.observables or name in r.mc for r in self.replicas)

    def after_thermalization(self):
        return dataclasses.replace(self, replicas=[r.after_thermalization() for r in self.replicas])

    def check(self, total, per_replica):
        """Raise AnalysisError unless the measurements after thermalisation can be analysed.

        At least ``total`` measurements in all and ``per_replica`` in each replica, and every
        distance between measurements a multiple of the smallest (the Gamma method works on
        one spacing; gaps are allowed).
        """
        interval = self.measurement_interval
        for r in self.replicas:
            odd = np.diff(r.trajectory)[np.diff(r.trajectory) % interval != 0]
            if odd.size:
                raise AnalysisError(
                    f"replica {r.name} ({', '.join(r.files)}) has measurements {odd[0]} "
                    f"trajectories apart, not a multiple of the smallest distance {interval}; "
                    "analyse runs with different sampler.measure_every separately")
        counts = [r.n_kept for r in self.replicas]
        for r, n in zip(self.replicas, counts):
            if n < per_replica:
                raise AnalysisError(
                    f"replica {r.name} ({', '.join(r.files)}) has {n} measurements after "
                    f"thermalisation (trajectory > {r.thermalization}); each replica needs at "
                    f"least {per_replica}")
        if sum(counts) < total:
            raise AnalysisError(
                f"chain too short: {sum(counts)} measurements after thermalisation; the Gamma "
                f"method needs at least {total} (run longer or lower the thermalisation cut)")
