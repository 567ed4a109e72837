"""Real scalar phi^4 theory on a periodic D-dimensional lattice.

Both conventions in use are the same quartic polynomial,

    S[phi] = sum_x [ -h sum_mu phi_x phi_{x+mu} + c2 phi_x^2 + c4 phi_x^4 + c0 ],

with coefficients

    hopping form  (kappa, lambda):  h = 2 kappa, c2 = 1 - 2 lambda, c4 = lambda, c0 = lambda,
        i.e. S = sum_x [ -2 kappa sum_mu phi_x phi_{x+mu} + phi_x^2 + lambda (phi_x^2 - 1)^2 ];
    standard form (m^2, lambda):    h = 2, c2 = 2D + m^2, c4 = lambda, c0 = 0,
        i.e. S = sum_x [ sum_mu (phi_{x+mu} - phi_x)^2 + m^2 phi_x^2 + lambda phi_x^4 ].

Map between them: phi_std = sqrt(kappa) phi_hop with
    kappa = [sqrt((2D + m^2)^2 + 8 lambda_std) - (2D + m^2)] / (4 lambda_std)
          (= 1 / (2D + m^2) at lambda_std = 0),
    lambda_hop = lambda_std kappa^2,
and then S_hop[phi_hop] = S_std[phi_std] + lambda_hop V.
"""

import math
from dataclasses import dataclass

import numpy as np

from lqcdflow.rng import STREAM_HOT_START
from lqcdflow.schema import ConfigError, Key
from lqcdflow.theories.base import FieldSpec, Observable, Theory


def standard_to_hopping(m2, lam, ndim):
    """(kappa, lambda_hop) of the hopping form equal to the standard form (m^2, lambda).

    >>> standard_to_hopping(-4.0, 8.0, 2)
    (0.25, 0.5)
    """
    a = 2 * ndim + m2
    if lam == 0:
        if a <= 0:
            raise ValueError(f"free field needs 2D + m^2 > 0, got {a}")
        kappa = 1.0 / a
    elif lam > 0:
        kappa = (math.sqrt(a * a + 8 * lam) - a) / (4 * lam)
    else:
        raise ValueError(f"lambda must be >= 0, got {lam}")
    return kappa, lam * kappa**2


def hopping_to_standard(kappa, lam, ndim):
    """(m^2, lambda_std) of the standard form equal to the hopping form (kappa, lambda).

    m^2 = (1 - 2 lambda) / kappa - 2D,  lambda_std = lambda / kappa^2.
    """
    if kappa <= 0:
        raise ValueError(f"the map to the standard form needs kappa > 0, got {kappa}")
    return (1 - 2 * lam) / kappa - 2 * ndim, lam / kappa**2


@dataclass(frozen=True)
class Phi4Couplings:
    """Coefficients (h, c2, c4, c0) of the quartic lattice action, see the module docstring.

    Stored as Python floats: a NumPy float64 would make float32 fields compute in float64
    (NumPy's promotion rules), and the compiled kernels round the couplings to the field's
    dtype as NumPy does for Python floats.
    """

    h: float
    c2: float
    c4: float
    c0: float

    def __post_init__(self):
        for name in ("h", "c2", "c4", "c0"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @classmethod
    def hopping(cls, kappa, lam):
        return cls(2.0 * kappa, 1.0 - 2.0 * lam, lam, lam)

    @classmethod
    def standard(cls, m2, lam, ndim):
        return cls(2.0, 2.0 * ndim + m2, lam, 0.0)

    @classmethod
    def of_form(cls, form, kappa, m2, lam, ndim):
        """The couplings of ``form`` ("hopping": kappa, lambda; "standard": m2, lambda)."""
        return cls.hopping(kappa, lam) if form == "hopping" else cls.standard(m2, lam, ndim)


OBSERVABLES = (
    Observable("action", (), "S, the action"),
    Observable("m", (), "M = sum_x phi_x, the magnetisation"),
    Observable("abs_m", (), "|M|"),
    Observable("m2", (), "M^2"),
    Observable("m4", (), "M^4"),
    Observable("W", (), "W = 2 sum_{x,mu} phi_x phi_{x+mu} (= -dS/d kappa, hopping form)"),
)


class Phi4(Theory):
    """phi^4 theory on a domain-decomposed lattice: one real number per site.

    Parameters
    ----------
    lattice : lqcdflow.parallel.Lattice
    couplings : Phi4Couplings
    """

    field = FieldSpec("phi", (), description="real scalar field phi_x")
    momentum_shape = ()
    compiled_kernels = "lqcdflow.kernels.phi4_numba"  # lqcdflow.kernels.select
    device_kernels = "lqcdflow.kernels.phi4_cuda"  # lqcdflow.kernels.select, on a GPU

    def __init__(self, lattice, couplings: Phi4Couplings):
        super().__init__(lattice)
        self.couplings = couplings
        self._scratch = {}  # dtype -> one slab of the lattice, for force
        correlator = Observable(
            "correlator", (lattice.shape[0],),
            "C(t) = (1/V) sum_t0 S(t0) S(t0 + t), S(t) = sum_{x: x_0 = t} phi_x")
        self.observables = OBSERVABLES + (correlator,)

    def describe(self):
        c = self.couplings
        return f"phi^4: h = {c.h:g}, c2 = {c.c2:g}, c4 = {c.c4:g}, c0 = {c.c0:g}"

    def hot_start(self, rng):
        """phi_x = sigma z_x, z_x ~ N(0, 1) per site, with sigma^2 = <phi^2> of one site alone
        (the weight exp(-c2 phi^2 - c4 phi^4) without the hopping term): a disordered field
        whose local potential is of order one per site whatever the couplings, so that the
        molecular dynamics starts stable (a unit Gaussian makes c4 phi^4 ~ 3 c4 per site)."""
        lat = self.lattice
        z = rng.normal(lat.site_index, 0, STREAM_HOT_START, lat.xp)
        return (single_site_width(self.couplings) * z).astype(lat.backend.dtype)

    def link_sum(self, phi):
        """l_x = sum_mu phi_x phi_{x+mu} (one forward neighbour per direction)."""
        lat = self.lattice
        out = lat.xp.zeros_like(phi)
        for mu in range(lat.ndim):
            out += phi * lat.shift(phi, mu, +1)
        return out

    def action_density(self, phi, links=None):
        """Action density s_x = -h l_x + c2 phi_x^2 + c4 phi_x^4 + c0, with S = sum_x s_x."""
        c = self.couplings
        links = self.link_sum(phi) if links is None else links
        phi2 = phi * phi
        return ((c.c4 * phi2 + c.c2) * phi2 + c.c0) - c.h * links

    def force(self, phi, out=None):
        """dS/dphi_x = -h sum_mu (phi_{x+mu} + phi_{x-mu}) + (4 c4 phi_x^2 + 2 c2) phi_x.

        ``out`` (optional) receives the result, avoiding an allocation per call.

        The polynomial is evaluated slab by slab (``on_slab`` of
        :meth:`Lattice.neighbour_sum <lqcdflow.parallel.Lattice.neighbour_sum>`) right after
        the neighbour sum of the slab, while that and phi's slab are still in cache, through a
        slab-sized scratch array instead of a field-sized temporary: its six array operations
        then cost L2 rather than L3 or memory bandwidth. The operations and their order are
        those of a whole-field evaluation, so the result does not depend on the slab size.
        """
        c = self.couplings
        out = self.lattice.xp.empty_like(phi) if out is None else out
        if phi.dtype not in self._scratch:
            self._scratch[phi.dtype] = self.lattice.empty_slab(phi.dtype)
        scratch = self._scratch[phi.dtype]

        def finish(rows):
            f, p = out[rows], phi[rows]
            local = self.potential_force(p, out=scratch[:p.size].reshape(p.shape))
            f *= -c.h
            f += local

        return self.lattice.neighbour_sum(phi, out=out, on_slab=finish)

    def hopping_force(self, phi, out=None):
        """The hopping term's force, -h sum_mu (phi_{x+mu} + phi_{x-mu})."""
        out = self.lattice.neighbour_sum(phi, out=out)
        out *= -self.couplings.h
        return out

    def potential_force(self, phi, out=None):
        """The local term's force, (4 c4 phi_x^2 + 2 c2) phi_x (no communication)."""
        c, xp = self.couplings, self.lattice.xp
        out = xp.multiply(phi, phi, out=out)
        out *= 4.0 * c.c4
        out += 2.0 * c.c2
        out *= phi
        return out

    def force_terms(self):
        """(hopping, potential): the hopping term needs the halo exchange, the local
        potential is cheap and, at large lambda, the larger force (inner level)."""
        return (("hopping", self.hopping_force), ("potential", self.potential_force))

    # ------------------------------------------------------------------ local updates
    local_components = ((),)  # one value per site

    def local_environment(self, phi, component):
        """n_x = sum_mu (phi_{x+mu} + phi_{x-mu}), the neighbour sum."""
        return self.lattice.neighbour_sum(phi)

    def local_action(self, phi, n):
        """The part of S that depends on phi_x: -h phi_x n_x + c2 phi_x^2 + c4 phi_x^4."""
        c = self.couplings
        phi2 = phi * phi
        return (c.c4 * phi2 + c.c2) * phi2 - c.h * phi * n

    def propose(self, phi, u, width):
        """The Metropolis proposal phi_x + width (2 u_x - 1), symmetric, in phi's precision
        (the value accepted is the one stored)."""
        return (phi + width * (2.0 * u - 1.0)).astype(phi.dtype)

    def sum_observables(self, phi):
        """S and M = sum_x phi_x (see Theory.sum_observables)."""
        return {"action": self.action(phi), "m": self.lattice.sum(phi)}

    def measure(self, phi):
        """Per-configuration observables (see ``observables``), identical on all ranks.

        ``correlator`` is the zero-momentum time-slice correlator C(t) (a NumPy array of
        length L_0); the others are floats.
        """
        lat = self.lattice
        links = self.link_sum(phi)
        action = lat.sum(self.action_density(phi, links))
        w = 2.0 * lat.sum(links)
        slices = lat.timeslice_sum(phi)
        m = math.fsum(slices)
        corr = circular_correlation(slices)
        return {"action": action, "m": m, "abs_m": abs(m), "m2": m * m, "m4": m**4, "W": w,
                "correlator": corr / lat.volume}


def circular_correlation(slices):
    """C(t) = sum_t0 s(t0) s(t0 + t), periodic in t0 + t, each sum exactly rounded (math.fsum:
    a BLAS dot's order, and so its last bit, depends on the library build).

    The shifted copies s(t0 + t) are rows of a sliding window over s twice over (no copies),
    multiplied by s a block of rows at a time (at most 2^16 products in memory)."""
    length = slices.size
    shifted = np.lib.stride_tricks.sliding_window_view(np.concatenate((slices, slices)), length)
    rows = max(1, (1 << 16) // length)
    return np.array([math.fsum(products) for start in range(0, length, rows)
                     for products in (slices * shifted[start:min(start + rows, length)]).tolist()])


def single_site_width(couplings):
    """sigma = sqrt(<phi^2>) under the one-site weight exp(-c2 phi^2 - c4 phi^4).

    1/sqrt(2 c2) without the quartic term; otherwise by the trapezoidal rule on a grid that
    reaches where the weight has fallen below e^-60 of its maximum.
    """
    c2, c4 = couplings.c2, couplings.c4
    if c4 == 0:
        return math.sqrt(0.5 / c2)
    # beyond R the potential exceeds its minimum by > 60
    lowest = -c2 * c2 / (4 * c4) if c2 < 0 else 0.0
    reach = max(1.0, math.sqrt(max(-c2, 0.0) / c4))
    while c2 * reach**2 + c4 * reach**4 - lowest < 60:
        reach *= 1.5
    x = np.linspace(-reach, reach, 4001)
    weight = np.exp(-(c2 * x * x + c4 * x**4 - lowest))
    return math.sqrt(np.trapezoid(x * x * weight, x) / np.trapezoid(weight, x))


# ---------------------------------------------------------------------- run file: [theory]
KEYS = {
    "form": Key("choice", "hopping", choices=("hopping", "standard")),
    "kappa": Key("float", None, allowed="a real number (hopping form)"),
    "m2": Key("float", None, allowed="a real number (standard form)"),
    "lambda": Key("float", check=lambda v: v >= 0, allowed="a real number >= 0"),
}
ALGORITHMS = ("hmc", "langevin", "nmcmc", "diffusion", "metropolis")  # [sampler] algorithms
FLOW_COUPLINGS = ("spline", "affine")  # [flow] couplings of its flows, the default first


def check(values, given, ndim):
    """The form's coupling is given, the other form's is not, and the free field is stable."""
    needed, forbidden = ("kappa", "m2") if values["form"] == "hopping" else ("m2", "kappa")
    if values[needed] is None:
        raise ConfigError(f"[theory] missing key '{needed}' (needed by form = "
                          f"'{values['form']}')")
    if forbidden in given:
        raise ConfigError(f"[theory] key '{forbidden}' does not belong to form = "
                          f"'{values['form']}'")
    # at lambda = 0 the action is bounded below only for a positive quadratic form
    if values["lambda"] != 0:
        return
    if values["form"] == "hopping" and not abs(values["kappa"]) < 1 / (2 * ndim):
        raise ConfigError(f"[theory] kappa = {values['kappa']} with lambda = 0 is unstable; "
                          f"the free field needs |kappa| < 1/(2D) = {1 / (2 * ndim):.6g}")
    if values["form"] == "standard" and not values["m2"] > 0:
        raise ConfigError(f"[theory] m2 = {values['m2']} with lambda = 0 is unstable; "
                          "the free field needs m2 > 0")


def make(settings, lattice):
    """The Phi4 theory of the [theory] settings on ``lattice``."""
    return Phi4(lattice, Phi4Couplings.of_form(settings.form, settings.kappa, settings.m2,
                                               settings.lambda_, lattice.ndim))


# ---------------------------------------------------------------------- analysis
# name, label, measured series, power of V it is divided by
MOMENTS = (
    ("m", "<M>/V", "m", 1),
    ("abs_m", "<|M|>/V", "abs_m", 1),
    ("m2", "<M^2>/V^2", "m2", 2),
    ("m4", "<M^4>/V^4", "m4", 4),
)


def magnetisation_quantities(V, measured):
    """(primary, derived) quantities of the magnetisation M on a lattice of V sites, shared
    with the Ising model: the moments <M>/V, <|M|>/V, <M^2>/V^2, <M^4>/V^4, and

        chi   = <M^2> / V                                 susceptibility
        chi_c = (<M^2> - <|M|>^2) / V                     connected susceptibility
        U     = <M^4> / <M^2>^2                           Binder ratio (3 for Gaussian M)
    """
    primary = [(name, label, measured(lambda o, s=series, k=k: o[s] / V**k))
               for name, label, series, k in MOMENTS]
    p = {name: obs for name, _, obs in primary}
    m2, m4, abs_m = p["m2"], p["m4"], p["abs_m"]
    derived = [("chi", "chi = <M^2>/V", V * m2),
               ("chi_connected", "chi_c = (<M^2>-<|M|>^2)/V", V * (m2 - abs_m**2)),
               ("binder_ratio", "U = <M^4>/<M^2>^2", m4 / m2**2)]
    return primary, derived


def quantities(theory, shape, measured, has):
    """The analysis of phi^4 ensembles: (primary, derived, notes), each quantity a tuple
    (name, label, Obs); ``measured(f)`` is the Obs of the series f(observables), ``has(name)``
    whether every replica holds series ``name``.

    M = sum_x phi_x is the total magnetisation, V the lattice volume, <.> the ensemble mean.

    Primary (means of measured series): <S>/V, <M>/V, <|M|>/V, <M^2>/V^2, <M^4>/V^4.

    Derived (errors propagated linearly by pyerrors): chi, chi_c and U
    (:func:`magnetisation_quantities`), and, in the hopping form, where
    W = 2 sum_{x,mu} phi_x phi_{x+mu} = -dS/d kappa, the kappa derivatives
    d<A>/d kappa = <W A> - <W><A> (A independent of kappa):

        d chi / d kappa       = (<W M^2> - <W><M^2>) / V
        d(<|M|>/V) / d kappa  = (<W |M|> - <W><|M|>) / V
        dU / d kappa          = (D_4 <M^2> - 2 <M^4> D_2) / <M^2>^3,  D_k = <W M^k> - <W><M^k>.
    """
    V = math.prod(shape)
    moments, derived = magnetisation_quantities(V, measured)
    primary = [("action_density", "<S>/V", measured(lambda o: o["action"] / V)), *moments]
    p = {name: obs for name, _, obs in primary}
    m2, m4 = p["m2"], p["m4"]
    notes = []
    if theory.get("form") != "hopping":
        notes.append("d/d kappa not computed: the theory is not in the hopping form")
    elif not has("W"):
        notes.append("d/d kappa not computed: no series W")
    else:
        w = measured(lambda o: o["W"])

        def d(name, series, k):  # <W A> - <W><A> for A = series / V^k
            return measured(lambda o: o["W"] * o[series] / V**k) - w * p[name]

        d2, d4 = d("m2", "m2", 2), d("m4", "m4", 4)
        derived += [("dchi_dkappa", "d chi/d kappa", V * d2),
                    ("dabs_m_dkappa", "d(<|M|>/V)/d kappa", d("abs_m", "abs_m", 1)),
                    ("dbinder_dkappa", "dU/d kappa", (d4 * m2 - 2 * m4 * d2) / m2**3)]
    return primary, derived, notes


REQUIRED = ("action", "m", "abs_m", "m2", "m4")  # series the analysis cannot do without
THERMALIZATION = ("action", "abs_m")  # series whose transient detects the thermalisation cut
CORRELATOR = True  # measures C(t): the analysis gives C(t), m_eff and xi_2nd

PLOTS = {
    # series, power of V it is divided by, axis label, result with its mean
    "history": (("action", 1, "$S/V$", "action_density"),
                ("m", 1, "$M/V$", "m"),
                ("m2", 1, "$M^2/V$", "chi")),
    "autocorrelation": ("action_density", "abs_m", "chi", "binder_ratio"),
    # series, power of V, axis label: its histogram with the Gaussian of its mean and variance
    "histogram": ("m", 1, "$M/V$"),
}
