"""Local updates: checkerboard sweeps of Metropolis or heatbath updates of single degrees of
freedom (a site's value, a link).

A sweep updates, for each component of the field in turn (the one value of a scalar field, the
link in direction mu = 0, 1, ... of a gauge field), that component on the even sites (sum of
the global coordinates even), then on the odd ones. With nearest-neighbour actions, the
degrees of freedom of one component and parity do not interact (a plaquette holds two links
of direction mu, at x and x + nu, of opposite parity), so all of them are updated at once, each
from its environment (neighbour sum or staple sum, halo-exchanged before each group), and the
result is that of updating them one after another in any order: detailed balance holds for
each. A theory supports local updates with an attribute and four methods
(lqcdflow.theories.ising, lqcdflow.theories.u1):

    local_components              index tuples into the site shape, updated in this order:
                                  ((),) for one number per site, ((0,), (1,), ...) for links
    local_environment(field, c)   E_x: what the action of component c at x depends on besides
                                  its value (neighbour sum, staple sum); halo-exchanged
    local_action(value, E)        s(value; E), the part of S that depends on it (up to a
                                  constant)
    propose(value, u, width)      a symmetric Metropolis proposal from uniforms u in (0, 1)
    heatbath(E, draw)             a value drawn from exp(-s(.; E)) (heatbath only); draw(a,
                                  pending) gives the two uniforms of attempt a of each
                                  degree of freedom (of those at positions ``pending``), so
                                  rejection methods draw what they need, site by site

Metropolis (``hits`` times per degree of freedom): value' = propose(value, u1, width), accepted
if Delta s = s(value') - s(value) <= 0 or log(u2) < -Delta s. Heatbath: value = heatbath(E,
draw).

The random numbers of degree of freedom k of site x (global index i(x) n + k, as
lqcdflow.parallel.Lattice.dof_index) in sweep n, hit or attempt a, are Philox words of (that
index, draw n, stream STREAM_LOCAL, a) (lqcdflow.rng), and log u is IEEE-exact (rng.log_exact):
a chain is bitwise the same on any rank count and process grid, and on NumPy and CuPy where the
local action needs no transcendental functions (Ising, phi^4; U(1) needs cos and sin).
"""

from dataclasses import dataclass

from lqcdflow.kernels.select import choose
from lqcdflow.mc.hmc import ChainState
from lqcdflow.rng import STREAM_LOCAL, CounterRNG, log_exact, uniform_from_words

LOCAL_RECORD = (("acceptance", "<f8"), ("delta_S", "<f8"))  # the /mc series of a sweep


@dataclass(frozen=True)
class SweepInfo:
    """What one sweep did: its number, the fraction of updates that changed their degree of
    freedom, and the change of the action (the record LOCAL_RECORD)."""

    trajectory: int
    acceptance: float
    delta_S: float

    def change(self):
        """(label, value) of the change of energy, which must be finite."""
        return "Delta S", self.delta_S


class LocalSampler:
    """Checkerboard sweeps of ``algorithm`` ("metropolis" or "heatbath") for a theory with the
    local-update methods (module docstring).

    The chain state is a ChainState whose ``accepted`` counts the updates that changed their
    degree of freedom, ``updates_per_step`` (= volume x components x hits) of them per sweep.
    ``kernels`` ([run] kernels, lqcdflow.kernels.select) chooses who updates a group's sites
    from their environment: :class:`ArrayLocal`, or a theory's compiled ones (its kernel
    module's ``make_metropolis`` or ``make_heatbath``; the same bits).
    """

    record = LOCAL_RECORD

    def __init__(self, theory, algorithm, seed, hits=1, width=1.0, kernels="numpy"):
        self.theory, self.algorithm, self.hits, self.width = theory, algorithm, hits, width
        self.name = {"metropolis": "Metropolis", "heatbath": "heatbath"}[algorithm]
        self.rng = CounterRNG(seed)
        self.kernels = choose(theory, kernels, f"make_{algorithm}", algorithm,
                              lambda: ArrayLocal(theory, algorithm, self.rng, hits, width),
                              self.rng, hits, width)
        lat = theory.lattice
        components = theory.local_components
        self.updates_per_step = lat.volume * len(components) * (
            hits if algorithm == "metropolis" else 1)
        parity = sum(lat.xp.arange(o, o + n).reshape([-1 if a == mu else 1
                                                      for a in range(lat.ndim)])
                     for mu, (o, n) in enumerate(zip(lat.offset, lat.local_shape))) % 2
        index = lat.dof_index(theory.field.site_shape)
        # (component, (its sites of one parity, their flat indices, their random-number
        # indices)), in update order
        self.groups = [(component, (mask, lat.xp.flatnonzero(mask),
                                    index[(Ellipsis,) + component][mask]))
                       for component in components for mask in (parity == 0, parity == 1)]

    def step(self, state):
        """One sweep: each component on the even sites, then on the odd ones. Returns
        (state, SweepInfo)."""
        lat = self.theory.lattice
        sweep = state.trajectory + 1
        field = state.field.copy()
        changed = lat.xp.zeros(lat.local_shape)
        delta_s = lat.xp.zeros(lat.local_shape)
        for component, group in self.groups:
            environment = self.theory.local_environment(field, component)
            self.kernels.update(field, component, environment, group, sweep, changed, delta_s)
        accepted = int(lat.sum(changed))
        return (ChainState(field, sweep, state.accepted + accepted),
                SweepInfo(sweep, accepted / self.updates_per_step, lat.sum(delta_s)))

    def describe(self):
        kernels = f"; kernels: {self.kernels.name}"
        if self.algorithm == "heatbath":
            return "checkerboard sweeps, one heatbath draw per update" + kernels
        return (f"checkerboard sweeps, {self.hits} hit(s) per update, proposal width "
                f"{self.width:g}" + kernels)


class ArrayLocal:
    """The local updates of a group in array operations of the lattice's backend (module
    docstring)."""

    name = "numpy"

    def __init__(self, theory, algorithm, rng, hits, width):
        self.theory, self.algorithm, self.rng, self.hits, self.width = (theory, algorithm, rng,
                                                                        hits, width)

    def update(self, field, component, environment, group, sweep, changed, delta_s):
        """The updates of ``component`` of ``field`` at one group of sites (mask, flat site
        indices, random-number indices) in sweep ``sweep``: in place, the number of changes
        at each site and the change of its local action added to ``changed`` and
        ``delta_s``."""
        mask, _, dofs = group
        values = field[(Ellipsis,) + component]  # a view: assigning to it updates field
        values[mask], changed_here, delta_here = self._update(values[mask], environment[mask],
                                                              dofs, sweep)
        changed[mask] += changed_here
        delta_s[mask] += delta_here

    def _update(self, value, environment, dofs, sweep):
        """(new values, updates that changed each, change of each one's local action) of the
        degrees of freedom ``dofs`` (random-number indices) of one group."""
        xp, local_action = self.theory.lattice.xp, self.theory.local_action
        start = action = local_action(value, environment)
        if self.algorithm == "heatbath":
            def draw(attempt, pending=None):
                w = self.rng.words(dofs if pending is None else dofs[pending], sweep,
                                   STREAM_LOCAL, attempt, xp)
                return uniform_from_words(w[0], w[1]), uniform_from_words(w[2], w[3])

            new = self.theory.heatbath(environment, draw)
            return new, (new != value).astype(float), local_action(new, environment) - start
        changed = xp.zeros(value.shape)
        for hit in range(self.hits):
            w = self.rng.words(dofs, sweep, STREAM_LOCAL, hit, xp)
            proposal = self.theory.propose(value, uniform_from_words(w[0], w[1]), self.width)
            proposed = local_action(proposal, environment)
            delta = proposed - action
            accept = (delta <= 0) | (log_exact(uniform_from_words(w[2], w[3]), xp) < -delta)
            accept &= proposal != value
            value = xp.where(accept, proposal, value)
            action = xp.where(accept, proposed, action)
            changed += accept
        return value, changed, action - start
