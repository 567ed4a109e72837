"""Compact U(1) lattice gauge theory with the Wilson action, in any dimension D >= 2.

Links U_mu(x) = exp(i theta_mu(x)) are stored as their angles theta, a real field of site
shape (D,) (lattice axes first, direction last). The plaquette angle in the plane mu < nu is

    theta_{mu nu}(x) = theta_mu(x) + theta_nu(x + mu) - theta_mu(x + nu) - theta_nu(x),

and the action S = beta sum_x sum_{mu < nu} (1 - cos theta_{mu nu}(x)). With the
antisymmetric extension theta_{nu mu} = -theta_{mu nu}, the force is

    F_mu(x) = dS/dtheta_mu(x) = beta sum_{nu != mu} [ sin theta_{mu nu}(x)
                                                       - sin theta_{mu nu}(x - nu) ].

HMC momenta are real, one per link (P_mu(x) ~ N(0, 1)); the field update is
theta <- theta + eps P (U <- exp(i eps P) U), and an accepted field has its angles wrapped
into [-pi, pi). The Haar measure is uniform in theta: the hot start draws theta uniform in
(-pi, pi) per link, the cold start is theta = 0 (unit links).

Gauge transformations U_mu(x) -> g(x) U_mu(x) g(x + mu)^*, theta_mu(x) -> theta_mu(x) +
alpha(x) - alpha(x + mu), leave theta_{mu nu}, S, the plaquette, Q and |P_mu| unchanged.

Observables (Bonati and Rossi, arXiv:1901.09830, for the exact 2D results):
    plaquette      <cos theta_P>, the mean over the V D (D - 1)/2 plaquettes;
    polyakov       P_mu = (L_mu / V) sum_{x: x_mu = 0} exp(i sum_{t} theta_mu(x + t mu)),
                   one complex number per direction;
    topological_charge (D = 2 only): the geometric charge
                   Q = (1/2pi) sum_x wrap(theta_{01}(x)), wrap into [-pi, pi), an integer.
"""

import math

import numpy as np

from lqcdflow.rng import STREAM_HOT_START, log_exact
from lqcdflow.schema import ConfigError, Key
from lqcdflow.theories.base import FieldSpec, Observable, Theory

TWO_PI = 2.0 * math.pi


def wrap(angle, xp=np):
    """The angle mapped into [-pi, pi): angle - 2 pi floor((angle + pi) / (2 pi)), then one
    2 pi more where rounding left it just outside (e.g. for the float below pi, whose
    angle + pi rounds up to 2 pi).

    Angles already in [-pi, pi) are returned with their bits unchanged (up to that float).
    """
    r = angle - TWO_PI * xp.floor((angle + math.pi) / TWO_PI)
    r = xp.where(r < -math.pi, r + TWO_PI, r)
    return xp.where(r >= math.pi, r - TWO_PI, r)


class U1(Theory):
    """U(1) Wilson gauge theory on a domain-decomposed lattice (see the module docstring).

    Parameters
    ----------
    lattice : lqcdflow.parallel.Lattice
        D >= 2 dimensions.
    beta : float
        The inverse coupling beta = 1/g^2.
    """

    compiled_kernels = "lqcdflow.kernels.u1_numba"  # lqcdflow.kernels.select
    device_kernels = "lqcdflow.kernels.u1_cuda"  # lqcdflow.kernels.select, on a GPU

    def __init__(self, lattice, beta):
        if lattice.ndim < 2:
            raise ValueError(f"U(1) gauge theory needs D >= 2, got a {lattice.ndim}D lattice")
        super().__init__(lattice)
        self.beta = float(beta)
        d = lattice.ndim
        self.field = FieldSpec("theta", (d,), description="link angles theta_mu(x), "
                               "U_mu(x) = exp(i theta_mu(x)), direction mu last")
        self.momentum_shape = (d,)
        self.local_components = tuple((mu,) for mu in range(d))  # link updates: mu by mu
        self.planes = [(mu, nu) for mu in range(d) for nu in range(mu + 1, d)]
        observables = [
            Observable("action", (), "S = beta sum_P (1 - cos theta_P)"),
            Observable("plaquette", (), "<cos theta_P>, mean over all plaquettes"),
            Observable("polyakov", (d,), "P_mu = (L_mu/V) sum_{x: x_mu=0} exp(i sum_t "
                       "theta_mu(x + t mu)), per direction mu", complex=True),
        ]
        if d == 2:
            observables.append(Observable(
                "topological_charge", (),
                "Q = (1/2pi) sum_x wrap(theta_01(x)), geometric charge (integer)"))
        self.observables = tuple(observables)

    def describe(self):
        return f"U(1) Wilson gauge theory: beta = {self.beta:g}"

    def hot_start(self, rng):
        """theta_mu(x) = pi (2 u - 1), u uniform in (0, 1) per link: Haar-random links."""
        lat = self.lattice
        u = rng.uniform(lat.dof_index(self.field.site_shape), 0, STREAM_HOT_START, lat.xp)
        return (math.pi * (2.0 * u - 1.0)).astype(lat.backend.dtype)

    def normalize(self, theta):
        """Angles wrapped into [-pi, pi), so that they never grow and lose precision."""
        return wrap(theta, self.lattice.xp)

    def _components(self, theta):
        """theta_mu as contiguous arrays of the local shape, and theta_nu(x + mu) for nu != mu
        (keyed (nu, mu)): the shifts every plaquette needs, one halo exchange each."""
        lat = self.lattice
        comps = [lat.xp.ascontiguousarray(theta[..., mu]) for mu in range(lat.ndim)]
        up = {(nu, mu): lat.shift(comps[nu], mu, +1)
              for mu in range(lat.ndim) for nu in range(lat.ndim) if nu != mu}
        return comps, up

    def plaquette_angles(self, theta):
        """{(mu, nu): theta_{mu nu}(x)} for mu < nu, each an array of the local shape."""
        comps, up = self._components(theta)
        return {(mu, nu): ((comps[mu] + up[(nu, mu)]) - up[(mu, nu)]) - comps[nu]
                for mu, nu in self.planes}

    def action_density(self, theta):
        """s_x = beta sum_{mu < nu} (1 - cos theta_{mu nu}(x))."""
        xp = self.lattice.xp
        total = None
        for angle in self.plaquette_angles(theta).values():
            term = 1.0 - xp.cos(angle)
            total = term if total is None else total + term
        return self.beta * total

    def force(self, theta, out=None):
        """F_mu(x) = beta sum_{nu != mu} [sin theta_{mu nu}(x) - sin theta_{mu nu}(x - nu)]
        (the module docstring); each plane adds to its two directions in a fixed order."""
        lat, xp = self.lattice, self.lattice.xp
        out = xp.zeros_like(theta) if out is None else out
        out[...] = 0.0
        for (mu, nu), angle in self.plaquette_angles(theta).items():
            s = xp.sin(angle)
            out[..., mu] += s - lat.shift(s, nu, -1)
            out[..., nu] -= s - lat.shift(s, mu, -1)
        out *= self.beta
        return out

    def measure(self, theta):
        """The declared observables of ``theta`` (floats; ``polyakov`` a complex array)."""
        values = {name: float(value) for name, value in self.sum_observables(theta).items()}
        values["polyakov"] = np.array([self._polyakov(theta, mu)
                                       for mu in range(self.lattice.ndim)])
        return values

    def sum_observables(self, theta):
        """S, <cos theta_P> and, in 2D, Q (see Theory.sum_observables). Q is counted exactly:
        wrap(theta_01(x)) = theta_01(x) - 2 pi n(x) with n(x) an integer, and the plaquette
        angles add up to zero on the torus (every link enters two with opposite signs), so
        Q = (1/2 pi) sum_x wrap(theta_01(x)) = -sum_x n(x)."""
        lat, xp = self.lattice, self.lattice.xp
        angles = self.plaquette_angles(theta)
        cosines = None
        for angle in angles.values():
            c = xp.cos(angle)
            cosines = c if cosines is None else cosines + c
        n_plaquettes = lat.volume * len(self.planes)
        sum_cos = lat.sum(cosines)
        values = {"action": self.beta * (n_plaquettes - sum_cos),
                  "plaquette": sum_cos / n_plaquettes}
        if lat.ndim == 2:
            angle = angles[(0, 1)]
            n = xp.round((angle - wrap(angle, xp)) / TWO_PI)
            values["topological_charge"] = 0.0 - lat.sum(n)
        return values

    def _polyakov(self, theta, mu):
        """P_mu: the mean over the lines of direction mu of exp(i sum of theta_mu along it)."""
        lat, xp = self.lattice, self.lattice.xp
        phase = lat.line_sum(xp.ascontiguousarray(theta[..., mu]), mu)
        loops = xp.exp(1j * phase)
        if lat.coords[mu] != 0:  # every rank of a line holds its loops: count them once
            loops[...] = 0.0
        return lat.sum(loops) * lat.shape[mu] / lat.volume

    # ------------------------------------------------------------------ local updates
    def local_environment(self, theta, component):
        """The staple sum of the links theta_mu(x), component = (mu,):

            A_mu(x) = sum_{nu != mu} [exp(i(theta_nu(x+mu) - theta_mu(x+nu) - theta_nu(x)))
                                + exp(i(theta_nu(x-nu) - theta_mu(x-nu) - theta_nu(x-nu+mu)))],

        so that the 2(D - 1) plaquettes holding the link have sum cos theta_P =
        Re(exp(i theta_mu(x)) A_mu(x)) (the backward plaquettes hold it conjugated).
        """
        (mu,) = component
        lat, xp = self.lattice, self.lattice.xp
        comps = [xp.ascontiguousarray(theta[..., nu]) for nu in range(lat.ndim)]
        staples = None
        for nu in range(lat.ndim):
            if nu == mu:
                continue
            up = lat.shift(comps[nu], mu, +1)  # theta_nu(x + mu)
            forward = (up - lat.shift(comps[mu], nu, +1)) - comps[nu]
            backward = lat.shift((comps[nu] - comps[mu]) - up, nu, -1)
            both = xp.exp(1j * forward) + xp.exp(1j * backward)
            staples = both if staples is None else staples + both
        return staples

    def local_action(self, theta, staples):
        """The part of S that depends on a link, up to a constant:
        -beta Re(exp(i theta) A) = -beta (cos theta Re A - sin theta Im A)."""
        xp = self.lattice.xp
        return -self.beta * (xp.cos(theta) * staples.real - xp.sin(theta) * staples.imag)

    def propose(self, theta, u, width):
        """The Metropolis proposal wrap(theta + width (2 u - 1)): a symmetric step on the
        circle, in theta's precision."""
        return wrap(theta + width * (2.0 * u - 1.0), self.lattice.xp).astype(theta.dtype)

    def heatbath(self, staples, draw):
        """theta = wrap(X - arg A), X drawn from the von Mises density exp(kappa cos X) with
        kappa = beta |A|: the link's conditional density exp(beta |A| cos(theta + arg A)).

        X by the rejection method of Best and Fisher (Appl. Statist. 28 (1979) 152), a wrapped
        Cauchy envelope: with a = 1 + sqrt(1 + 4 kappa^2), b = 2 kappa / (a + sqrt(2a)) (their
        (a - sqrt(2a)) / (2 kappa) without the cancellation at small kappa), r = (1 + b^2) /
        (2b), attempt k draws u, v; w = 2u - 1, z = cos(pi w), f = (1 + r z) / (r + z),
        c = kappa (r - f), and accepts X = sign(w) arccos(f) if c (2 - c) > v or
        log(c / v) + 1 - c >= 0 (w's sign and |w| are independent, so one uniform gives the
        point and the side). kappa = 0 (beta = 0 or A = 0): X = pi w, uniform.
        """
        xp = self.lattice.xp
        kappa = self.beta * xp.abs(staples).astype(np.float64)
        uniform = kappa == 0
        kappa = xp.where(uniform, 1.0, kappa)  # any kappa > 0: those values are not used
        a = 1.0 + xp.sqrt(1.0 + 4.0 * kappa * kappa)
        b = 2.0 * kappa / (a + xp.sqrt(2.0 * a))
        r = (1.0 + b * b) / (2.0 * b)
        x = xp.empty(kappa.shape)
        pending = xp.arange(kappa.size)
        for attempt in range(_MAX_HEATBATH_ATTEMPTS):
            if pending.size == 0:
                return wrap(x - xp.angle(staples), xp).astype(staples.real.dtype)
            u, v = draw(attempt, pending)
            w = 2.0 * u - 1.0
            rp, kp = r[pending], kappa[pending]
            z = xp.cos(math.pi * w)
            f = (1.0 + rp * z) / (rp + z)
            c = kp * (rp - f)
            ok = (c * (2.0 - c) > v) | (log_exact(c / v, xp) + 1.0 - c >= 0.0) | \
                uniform[pending]
            x[pending[ok]] = xp.where(uniform[pending], math.pi * w,
                                      xp.sign(w) * xp.arccos(f))[ok]
            pending = pending[~ok]
        raise RuntimeError("von Mises rejection did not terminate")  # probability ~0


# The envelope accepts with probability > 0.65 for every kappa: 200 attempts all fail with
# probability < 1e-90 at any site.
_MAX_HEATBATH_ATTEMPTS = 200


# ---------------------------------------------------------------------- run file: [theory]
KEYS = {"beta": Key("float", check=lambda v: v >= 0, allowed="a real number >= 0")}
ALGORITHMS = ("hmc", "langevin", "metropolis", "heatbath", "nmcmc")  # [sampler] algorithms
FLOW_COUPLINGS = ("ncp", "spline")  # [flow] circle maps of its flows, the default first


def check(values, given, ndim):
    """A gauge theory needs plaquettes: D >= 2."""
    if ndim < 2:
        raise ConfigError(f"[theory] name = 'u1' needs a lattice of D >= 2 dimensions, "
                          f"got {ndim}")


def make(settings, lattice):
    """The U1 theory of the [theory] settings on ``lattice``."""
    return U1(lattice, settings.beta)


# ---------------------------------------------------------------------- analysis
def quantities(theory, shape, measured, has):
    """The analysis of U(1) ensembles: (primary, derived, notes) as for every theory (see
    :mod:`lqcdflow.theories`).

    Primary: <S>/V, the plaquette <cos theta_P>, <|P_mu|> per direction and, in 2D, <Q>.
    Derived: in 2D the topological susceptibility chi_t = <Q^2>/V; the tau_int of the <Q>
    row is the integrated autocorrelation time of the charge, which grows roughly
    exponentially with beta under HMC (topological freezing).
    """
    V = math.prod(shape)
    primary = [("action_density", "<S>/V", measured(lambda o: o["action"] / V)),
               ("plaquette", "<cos theta_P>", measured(lambda o: o["plaquette"]))]
    if has("polyakov"):
        primary += [(f"abs_polyakov_{mu}", f"<|P_{mu}|>",
                     measured(lambda o, mu=mu: np.abs(o["polyakov"][:, mu])))
                    for mu in range(len(shape))]
    derived, notes = [], []
    if has("topological_charge"):
        primary.append(("topological_charge", "<Q>",
                        measured(lambda o: o["topological_charge"])))
        derived.append(("chi_t", "chi_t = <Q^2>/V",
                        measured(lambda o: o["topological_charge"] ** 2 / V)))
    elif len(shape) == 2:
        notes.append("chi_t not computed: no series topological_charge")
    return primary, derived, notes


REQUIRED = ("action", "plaquette")  # series the analysis cannot do without
THERMALIZATION = ("action", "plaquette")  # series whose transient detects the cut
CORRELATOR = False

PLOTS = {
    "history": (("plaquette", 0, "plaquette", "plaquette"),
                ("topological_charge", 0, "$Q$", "topological_charge")),
    "autocorrelation": ("plaquette", "topological_charge", "chi_t"),
    "histogram": ("topological_charge", 0, "$Q$"),
}
