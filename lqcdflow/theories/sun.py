"""SU(N) lattice gauge theory with the Wilson action, N = 2 or 3, in any dimension D >= 2.

Links U_mu(x) in SU(N) are stored as complex N x N matrices, site shape (D, N, N) (direction,
row, column; direction 0 is time). The plaquette in the plane mu < nu is

    U_{mu nu}(x) = U_mu(x) U_nu(x + mu) U_mu(x + nu)^dagger U_nu(x)^dagger,

and the action S = beta sum_x sum_{mu < nu} (1 - (1/N) Re tr U_{mu nu}(x)), beta = 2N/g^2.
The staple sum A_mu(x) = sum_{nu != mu} [U_nu(x + mu) U_mu(x + nu)^dagger U_nu(x)^dagger
+ U_nu(x + mu - nu)^dagger U_mu(x - nu)^dagger U_nu(x - nu)] collects the links' neighbours:
the part of S that holds U_mu(x) is -(beta/N) Re tr(U_mu(x) A_mu(x)).

Molecular dynamics. Momenta are traceless Hermitian, P_mu(x) = sum_a p_{mu,a}(x) T_a with
tr(T_a T_b) = delta_ab/2 (lqcdflow.groups.su_n), the real p_{mu,a} ~ N(0, 1) drawn per
component from the counter RNG, and

    H = sum_{x,mu} tr P_mu(x)^2 + S = sum_{x,mu,a} p_{mu,a}(x)^2 / 2 + S

(Chroma's normalisation; Grid's momenta are wider by sqrt(2)). The field update is
U <- exp(i eps P) U with the exact exponential of lqcdflow.groups.su_n; the force is the
derivative along U -> exp(i w T_a) U,

    F_{mu,a}(x) = dS/dw = (beta/N) Im tr(T_a U_mu(x) A_mu(x)).

Reunitarisation: an accepted field is projected back onto SU(N) (Gram-Schmidt of the first
N - 1 rows, the last fixed by det U = 1) once per trajectory; the largest deviation
max |U U^dagger - 1| removed so far is shown on the progress lines, and the deviation of
every measured configuration is recorded (``unitarity``).

Starts: cold, U = 1; hot, Haar-random links from 2N(N - 1) normal numbers per link of the
counter RNG (the same bits on any decomposition and on NumPy and CuPy).

Observables:
    plaquette            <(1/N) Re tr U_P>, the mean over all V D (D - 1)/2 plaquettes;
    plaquette_temporal   the mean over the planes (0, k);
    plaquette_spatial    the mean over the planes (j, k), j, k >= 1 (D >= 3 only);
    polyakov             P_mu = (L_mu/V) sum_{x: x_mu = 0} (1/N) tr prod_t U_mu(x + t mu), one
                         complex number per direction (mu = 0: the Polyakov loop);
    unitarity            max_{x,mu} |U U^dagger - 1| of the configuration;
and with the Wilson flow (flow_t_max > 0; lqcdflow.theories.wilson_flow), at the flow times
t_k = k flow_epsilon, k = 0 .. flow_t_max / flow_epsilon:
    flow_E_plaquette, flow_E_clover   the energy density E(t_k);
    flow_charge                       the clover topological charge Q(t_k) (4D only).
Gauge transformations U_mu(x) -> g(x) U_mu(x) g(x + mu)^dagger leave all of them unchanged.
"""

import numpy as np

from lqcdflow.groups.matrices import join, mul, re_trace_mul_adjoint, trace
from lqcdflow.groups.su_n import SU
from lqcdflow.rng import STREAM_HOT_START
from lqcdflow.schema import ConfigError, Key, positive
from lqcdflow.theories import wilson_flow
from lqcdflow.theories.base import FieldSpec, Observable, Theory


class SUN(Theory):
    """SU(N) Wilson gauge theory on a domain-decomposed lattice (see the module docstring).

    Parameters
    ----------
    lattice : lqcdflow.parallel.Lattice
        D >= 2 dimensions.
    n : int
        N = 2 or 3.
    beta : float
        The inverse coupling beta = 2N/g^2.
    flow_t_max, flow_epsilon : float
        Measure the Wilson flow up to t = flow_t_max (0: not at all) in RK3 steps of
        flow_epsilon, which must divide it.
    """

    compiled_kernels = "lqcdflow.kernels.sun_numba"  # lqcdflow.kernels.select
    device_kernels = "lqcdflow.kernels.sun_cuda"  # lqcdflow.kernels.select, on a GPU

    def __init__(self, lattice, n, beta, flow_t_max=0.0, flow_epsilon=0.02):
        if lattice.ndim < 2:
            raise ValueError(f"SU({n}) gauge theory needs D >= 2, got a {lattice.ndim}D lattice")
        super().__init__(lattice)
        self.group = SU(n)
        self.n, self.beta = n, float(beta)
        self.flow_epsilon = float(flow_epsilon)
        self.flow_steps = flow_steps(flow_t_max, flow_epsilon)
        d = lattice.ndim
        self.field = FieldSpec("U", (d, n, n), complex=True,
                               description=f"SU({n}) links U_mu(x), direction mu (0 = time), "
                               "row, column last")
        self.momentum_shape = (d, self.group.dimension)
        self.planes = [(mu, nu) for mu in range(d) for nu in range(mu + 1, d)]
        self.largest_deviation = 0.0  # max |U U^dagger - 1| removed by normalize so far
        observables = [
            Observable("action", (), f"S = beta sum_P (1 - Re tr U_P / {n})"),
            Observable("plaquette", (), f"<Re tr U_P / {n}>, mean over all plaquettes"),
            Observable("plaquette_temporal", (), "mean of Re tr U_P / N over planes (0, k)"),
        ]
        if d >= 3:
            observables.append(Observable("plaquette_spatial", (), "mean of Re tr U_P / N "
                                          "over planes (j, k), j, k >= 1"))
        observables += [
            Observable("polyakov", (d,), "P_mu = (L_mu/V) sum_{x: x_mu=0} tr prod_t "
                       "U_mu(x + t mu) / N, per direction mu", complex=True),
            Observable("unitarity", (), "max_{x,mu} |U U^dagger - 1|, entrywise"),
        ]
        if self.flow_steps:
            times = (self.flow_steps + 1,)
            observables += [
                Observable("flow_E_plaquette", times, "E(t_k) = 2 sum_{mu<nu} Re tr(1 - U_P) "
                           "of the Wilson-flowed field, t_k = k flow_epsilon"),
                Observable("flow_E_clover", times, "E(t_k) = sum_{mu<nu} tr F_{mu nu}^2, "
                           "clover F, of the Wilson-flowed field, t_k = k flow_epsilon")]
            if d == 4:
                observables.append(Observable(
                    "flow_charge", times, "clover Q(t_k) = (1/32 pi^2) sum_x eps_{mu nu rho "
                    "sigma} tr F_{mu nu} F_{rho sigma} of the Wilson-flowed field"))
        self.observables = tuple(observables)

    def describe(self):
        flow = (f"; Wilson flow of every measurement to t = {self.flow_steps * self.flow_epsilon:g}"
                f" in steps of {self.flow_epsilon:g}" if self.flow_steps else "")
        return f"SU({self.n}) Wilson gauge theory: beta = {self.beta:g}" + flow

    def health(self):
        return f"|UU^+-1| {self.largest_deviation:.1e}"

    # ------------------------------------------------------------------ configurations
    def cold_start(self):
        """U = 1 on every link."""
        field = self.zeros()
        for i in range(self.n):
            field[..., i, i] = 1.0
        return field

    def hot_start(self, rng):
        """Haar-random links from the counter RNG (stream STREAM_HOT_START, draw 0)."""
        lat = self.lattice
        normals = rng.normal(lat.dof_index((lat.ndim, self.n - 1, self.n, 2)), 0,
                             STREAM_HOT_START, lat.xp)
        return self.group.haar(normals, lat.xp).astype(self.field.dtype(lat.backend.dtype))

    def normalize(self, field):
        """The links projected back onto SU(N), in place, one direction at a time (bounded
        temporaries); records the deviation this removed."""
        lat, xp = self.lattice, self.lattice.xp
        deviation = 0.0
        for mu in range(lat.ndim):
            links = field[..., mu, :, :]
            deviation = max(deviation, float(self.group.unitarity_deviation(links, xp).max()))
            field[..., mu, :, :] = self.group.project(links, xp)
        self.largest_deviation = max(self.largest_deviation, lat.max(np.array(deviation)))
        return field

    # ------------------------------------------------------------------ plaquettes, staples
    def links(self, field):
        """U_mu for every mu, each a contiguous array of the local shape + (N, N)."""
        return [self.lattice.xp.ascontiguousarray(field[..., mu, :, :])
                for mu in range(self.lattice.ndim)]

    def _corners(self, links, mu, nu):
        """(U_nu(x + mu), U_mu(x + nu), L, R) with L = U_mu(x) U_nu(x + mu) and
        R = U_nu(x) U_mu(x + nu): U_{mu nu} = L R^dagger."""
        lat, xp = self.lattice, self.lattice.xp
        nu_at_mu = lat.shift(links[nu], mu, +1)
        mu_at_nu = lat.shift(links[mu], nu, +1)
        return (nu_at_mu, mu_at_nu, mul(links[mu], nu_at_mu, xp),
                mul(links[nu], mu_at_nu, xp))

    def plaquettes(self, field):
        """{(mu, nu): U_{mu nu}(x)} for mu < nu, matrices on the local lattice."""
        links, xp = self.links(field), self.lattice.xp
        return {(mu, nu): mul(*self._corners(links, mu, nu)[2:], xp, adjoint_b=True)
                for mu, nu in self.planes}

    def plaquette_traces(self, field):
        """{(mu, nu): Re tr U_{mu nu}(x)} for mu < nu, each an array of the local shape."""
        links = self.links(field)
        traces = {}
        for mu, nu in self.planes:
            _, _, left, right = self._corners(links, mu, nu)
            traces[(mu, nu)] = re_trace_mul_adjoint(left, right)
        return traces

    def mean_re_trace(self, field):
        """sum_P Re tr U_P / (number of plaquettes): N times the plaquette (openQCD's)."""
        traces = self.plaquette_traces(field)
        return sum(self.lattice.sum(t) for t in traces.values()) / (self.lattice.volume
                                                                    * len(traces))

    def staples(self, links):
        """[A_mu for every mu] (module docstring), the planes added in a fixed order.

        Per plane: L and R serve the plaquette, the two upper staples U_nu(x + mu) R^dagger
        and U_mu(x + nu) L^dagger, and the two lower ones, L^dagger U_nu and R^dagger U_mu
        taken from x - nu and x - mu: six products per plane.
        """
        lat, xp = self.lattice, self.lattice.xp
        staples = [None] * lat.ndim
        for mu, nu in self.planes:
            nu_at_mu, mu_at_nu, left, right = self._corners(links, mu, nu)
            for direction, term in (
                    (mu, mul(nu_at_mu, right, xp, adjoint_b=True)),
                    (nu, mul(mu_at_nu, left, xp, adjoint_b=True)),
                    (mu, lat.shift(mul(left, links[nu], xp, adjoint_a=True), nu, -1)),
                    (nu, lat.shift(mul(right, links[mu], xp, adjoint_a=True), mu, -1))):
                if staples[direction] is None:
                    staples[direction] = term
                else:
                    staples[direction] += term
        return staples

    # ------------------------------------------------------------------ action and force
    def action_density(self, field):
        """s_x = beta sum_{mu < nu} (1 - Re tr U_{mu nu}(x) / N)."""
        total = None
        for re_tr in self.plaquette_traces(field).values():
            term = 1.0 - re_tr / self.n
            total = term if total is None else total + term
        return self.beta * total

    def staple_derivative(self, field, out=None):
        """G_{mu,a}(x) = Im tr(T_a U_mu(x) A_mu(x)) = -d/dw sum_P Re tr U_P along
        U_mu(x) -> exp(i w T_a) U_mu(x): the force without its coupling, F = (beta/N) G, and
        the generator of the Wilson flow (lqcdflow.theories.wilson_flow)."""
        lat, xp = self.lattice, self.lattice.xp
        links = self.links(field)
        out = lat.zeros(self.momentum_shape, field.real.dtype) if out is None else out
        for mu, staple in enumerate(self.staples(links)):
            out[..., mu, :] = self.group.algebra_coordinates(mul(links[mu], staple, xp), xp)
        return out

    def force(self, field, out=None):
        """F_{mu,a}(x) = (beta/N) Im tr(T_a U_mu(x) A_mu(x)) (module docstring)."""
        out = self.staple_derivative(field, out)
        out *= self.beta / self.n
        return out

    def update_field(self, field, pi, eps):
        """U <- exp(i eps P) U, P = sum_a p_a T_a, in place, one direction at a time (the
        exponential's temporaries for one direction only)."""
        xp, group = self.lattice.xp, self.group
        for mu in range(self.lattice.ndim):
            step = group.exp_i(group.algebra_matrix(xp.multiply(pi[..., mu, :], eps), xp), xp)
            field[..., mu, :, :] = mul(step, field[..., mu, :, :], xp)

    # ------------------------------------------------------------------ measurements
    def measure(self, field):
        """The declared observables of ``field`` (floats; ``polyakov`` a complex array)."""
        lat, n = self.lattice, self.n
        sums = {plane: lat.sum(re_tr) for plane, re_tr in self.plaquette_traces(field).items()}
        temporal = [s for (mu, _), s in sums.items() if mu == 0]
        spatial = [s for (mu, _), s in sums.items() if mu != 0]
        total = sum(temporal) + sum(spatial)
        values = {"action": self.beta * (lat.volume * len(self.planes) - total / n),
                  "plaquette": total / (n * lat.volume * len(self.planes)),
                  "plaquette_temporal": sum(temporal) / (n * lat.volume * len(temporal))}
        if spatial:
            values["plaquette_spatial"] = sum(spatial) / (n * lat.volume * len(spatial))
        links = self.links(field)
        values["polyakov"] = np.array([self._polyakov(links[mu], mu)
                                       for mu in range(lat.ndim)])
        values["unitarity"] = lat.max(self.group.unitarity_deviation(field, lat.xp))
        if self.flow_steps:
            points = wilson_flow.wilson_flow(self, field, self.flow_epsilon, self.flow_steps)
            values["flow_E_plaquette"] = np.array([p.e_plaquette for p in points])
            values["flow_E_clover"] = np.array([p.e_clover for p in points])
            if lat.ndim == 4:
                values["flow_charge"] = np.array([p.charge for p in points])
        return values

    def _polyakov(self, link, mu):
        """P_mu: the mean over the lines of direction mu of tr(prod along the line) / N."""
        lat, xp = self.lattice, self.lattice.xp
        loops = lat.line_product(link, mu, lambda a, b: mul(a, b, xp))
        re, im = trace(loops)
        loops = join(re / self.n, im / self.n, xp)
        if lat.coords[mu] != 0:  # every rank of a line holds its loops: count them once
            loops[...] = 0.0
        return lat.sum(loops) * lat.shape[mu] / lat.volume


def flow_steps(t_max, epsilon):
    """The number of RK3 steps of size ``epsilon`` to the flow time ``t_max`` (ValueError if
    epsilon does not divide t_max to 1e-9)."""
    steps = round(t_max / epsilon)
    if abs(steps * epsilon - t_max) > 1e-9 * max(t_max, epsilon):
        raise ValueError(f"flow_t_max = {t_max:g} is not a multiple of flow_epsilon = "
                         f"{epsilon:g}")
    return steps


# ---------------------------------------------------------------------- run file: [theory]
KEYS = {"beta": Key("float", check=lambda v: v >= 0, allowed="a real number >= 0"),
        "flow_t_max": Key("float", 0.0, check=lambda v: v >= 0,
                          allowed="a flow time >= 0 (0: no Wilson flow)"),
        "flow_epsilon": Key("float", 0.02, check=positive, allowed="a flow time step > 0")}
ALGORITHMS = ("hmc", "langevin")  # [sampler] algorithms that sample it
GROUPS = {"su2": 2, "su3": 3}  # [theory] name -> N
MEASUREMENT_KEYS = ("flow_t_max", "flow_epsilon")  # only what is measured: lqcdflow measure


def check(values, given, ndim):
    """A gauge theory needs plaquettes: D >= 2; the flow step divides the flow time."""
    if ndim < 2:
        raise ConfigError(f"[theory] name = '{values['name']}' needs a lattice of D >= 2 "
                          f"dimensions, got {ndim}")
    try:
        flow_steps(values["flow_t_max"], values["flow_epsilon"])
    except ValueError as e:
        raise ConfigError(f"[theory] {e}") from None


def make(settings, lattice):
    """The SUN theory of the [theory] settings (name su2 or su3) on ``lattice``."""
    return SUN(lattice, GROUPS[settings.name], settings.beta, settings.flow_t_max,
               settings.flow_epsilon)


# ---------------------------------------------------------------------- analysis
def quantities(theory, shape, measured, has):
    """The analysis of SU(N) ensembles: (primary, derived, notes) as for every theory (see
    :mod:`lqcdflow.theories`).

    Primary: <S>/V, the plaquette <Re tr U_P / N> (all, temporal and, for D >= 3, spatial
    planes), <|P_mu|> per direction and, with the Wilson flow in 4D, <Q(t_max)>.
    Derived, with the Wilson flow: t0/a^2 and w0/a from E(t) of the clover and of the
    plaquette (lqcdflow.theories.wilson_flow: t^2 <E(t0)> = 0.3, W(w0^2) = 0.3, linear
    interpolation between the measured flow times), and chi_t = <Q(t_max)^2>/V in 4D.
    """
    V = int(np.prod(shape))
    primary = [("action_density", "<S>/V", measured(lambda o: o["action"] / V))]
    for name in ("plaquette", "plaquette_temporal", "plaquette_spatial"):
        if has(name):
            primary.append((name, f"<{name}>", measured(lambda o, name=name: o[name])))
    if has("polyakov"):
        primary += [(f"abs_polyakov_{mu}", f"<|P_{mu}|>",
                     measured(lambda o, mu=mu: np.abs(o["polyakov"][:, mu])))
                    for mu in range(len(shape))]
    derived, notes = [], []
    if has("flow_E_clover") and has("flow_E_plaquette"):
        epsilon = float(theory["flow_epsilon"])
        t = [k * epsilon for k in range(flow_steps(float(theory["flow_t_max"]), epsilon) + 1)]
        for kind in ("clover", "plaquette"):
            e = [measured(lambda o, k=k: o[f"flow_E_{kind}"][:, k]) for k in range(len(t))]
            for name, label, scale in (("t0", "t0/a^2", wilson_flow.scale_t0(t, e)),
                                       ("w0", "w0/a", wilson_flow.scale_w0(t, e))):
                if scale is None:
                    notes.append(f"{label} ({kind}) not reached by flow_t_max = {t[-1]:g}: "
                                 "flow longer")
                else:
                    derived.append((f"{name}_{kind}", f"{label} ({kind} E)", scale))
    if has("flow_charge"):
        primary.append(("flow_charge", "<Q(t_max)>", measured(lambda o: o["flow_charge"][:, -1])))
        derived.append(("chi_t", "chi_t = <Q(t_max)^2>/V",
                        measured(lambda o: o["flow_charge"][:, -1] ** 2 / V)))
    return primary, derived, notes


REQUIRED = ("action", "plaquette")  # series the analysis cannot do without
THERMALIZATION = ("action", "plaquette")  # series whose transient detects the cut
CORRELATOR = False

PLOTS = {
    "history": (("plaquette", 0, "plaquette", "plaquette"),),
    "autocorrelation": ("plaquette",),
    "histogram": ("plaquette", 0, "plaquette"),
}
