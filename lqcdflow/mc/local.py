"""Local updates: checkerboard sweeps of Metropolis or heatbath updates of single sites.

A sweep updates the even sites (sum of the global coordinates even), then the odd ones. With
nearest-neighbour actions, sites of one parity do not interact, so all of them are updated at
once, each from its environment (its neighbours, halo-exchanged before each half sweep), and
the result is that of updating them one after another in any order: detailed balance holds site
by site. A theory supports local updates with four methods (lqcdflow.theories.ising):

    local_environment(field)      E_x: what the action of site x depends on besides its value
                                  (for phi^4 and Ising the neighbour sum); halo-exchanged
    local_action(value, E)        s(value; E), the part of S that depends on the site
    propose(value, u, width)      a symmetric Metropolis proposal from uniforms u in (0, 1)
    heatbath(E, u)                a value drawn from exp(-s(.; E)) (heatbath only)

Metropolis (``hits`` times per site): value' = propose(value, u1, width), accepted if
Delta s = s(value') - s(value) <= 0 or log(u2) < -Delta s. Heatbath: value = heatbath(E, u).

The random numbers of site x in sweep n, hit k are Philox words of (global site index, draw n,
stream STREAM_LOCAL, attempt k) (lqcdflow.rng), and log u is IEEE-exact (rng.log_exact): a
chain is bitwise the same on any rank count and process grid, and on NumPy and CuPy.
"""

from dataclasses import dataclass

from lqcdflow.mc.hmc import ChainState
from lqcdflow.rng import STREAM_LOCAL, CounterRNG, log_exact, uniform_from_words

LOCAL_RECORD = (("acceptance", "<f8"), ("delta_S", "<f8"))  # the /mc series of a sweep


@dataclass(frozen=True)
class SweepInfo:
    """What one sweep did: its number, the fraction of site updates that changed the site,
    and the change of the action (the record LOCAL_RECORD)."""

    trajectory: int
    acceptance: float
    delta_S: float

    def change(self):
        """(label, value) of the change of energy, which must be finite."""
        return "Delta S", self.delta_S


class LocalSampler:
    """Checkerboard sweeps of ``algorithm`` ("metropolis" or "heatbath") for a theory with the
    local-update methods (module docstring).

    The chain state is a ChainState whose ``accepted`` counts the site updates that changed
    their site, ``updates_per_step`` (= volume x hits) of them per sweep.
    """

    record = LOCAL_RECORD

    def __init__(self, theory, algorithm, seed, hits=1, width=1.0):
        self.theory, self.algorithm, self.hits, self.width = theory, algorithm, hits, width
        self.name = {"metropolis": "Metropolis", "heatbath": "heatbath"}[algorithm]
        self.rng = CounterRNG(seed)
        lat = theory.lattice
        self.updates_per_step = lat.volume * (hits if algorithm == "metropolis" else 1)
        parity = sum(lat.xp.arange(o, o + n).reshape([-1 if a == mu else 1
                                                      for a in range(lat.ndim)])
                     for mu, (o, n) in enumerate(zip(lat.offset, lat.local_shape))) % 2
        self.masks = [parity == 0, parity == 1]
        self.sites = [lat.site_index[mask] for mask in self.masks]

    def step(self, state):
        """One sweep: the even sites, then the odd ones. Returns (state, SweepInfo)."""
        lat = self.theory.lattice
        sweep = state.trajectory + 1
        field = state.field.copy()
        changed = lat.xp.zeros(lat.local_shape)
        delta_s = lat.xp.zeros(lat.local_shape)
        for mask, sites in zip(self.masks, self.sites):
            environment = self.theory.local_environment(field)[mask]
            field[mask], changed[mask], delta_s[mask] = self._update(field[mask], environment,
                                                                     sites, sweep)
        accepted = int(lat.sum(changed))
        return (ChainState(field, sweep, state.accepted + accepted),
                SweepInfo(sweep, accepted / self.updates_per_step, lat.sum(delta_s)))

    def _update(self, value, environment, sites, sweep):
        """(new values, updates that changed each site, change of each site's local action)
        of the sites of one parity."""
        xp, local_action = self.theory.lattice.xp, self.theory.local_action
        start = action = local_action(value, environment)
        if self.algorithm == "heatbath":
            w = self.rng.words(sites, sweep, STREAM_LOCAL, 0, xp)
            new = self.theory.heatbath(environment, uniform_from_words(w[0], w[1]))
            return new, (new != value).astype(float), local_action(new, environment) - start
        changed = xp.zeros(value.shape)
        for hit in range(self.hits):
            w = self.rng.words(sites, sweep, STREAM_LOCAL, hit, xp)
            proposal = self.theory.propose(value, uniform_from_words(w[0], w[1]), self.width)
            proposed = local_action(proposal, environment)
            delta = proposed - action
            accept = (delta <= 0) | (log_exact(uniform_from_words(w[2], w[3]), xp) < -delta)
            accept &= proposal != value
            value = xp.where(accept, proposal, value)
            action = xp.where(accept, proposed, action)
            changed += accept
        return value, changed, action - start

    def describe(self):
        if self.algorithm == "heatbath":
            return "checkerboard sweeps, one draw per site"
        return f"checkerboard sweeps, {self.hits} hit(s) per site, proposal width {self.width:g}"
