/* SU(N) molecular dynamics (N = NC = 2, 3) on one rank's block, one thread per site or link (a
 * grid-stride loop): the passes of lqcdflow.kernels.sun_numba, whose docstring has the
 * formulas and their order, in the operations of lqcdflow.groups (each real operation rounded
 * alone, k in turn in a product), compiled after fields.cu by lqcdflow.kernels.device with
 * NDIM and NC defined.
 *
 * Links are complex (re, im interleaved), C order (site, mu, i, j); momenta real (site, mu, a),
 * a over the GENERATORS generators T_a of lqcdflow.groups.su_n.SU in its order, given as
 * generators[3 a + 0..2] = (kind, j, k) and c_k[a] (SU.generator_table: a diagonal one's j is
 * its k, its k 0; the kinds SYMMETRIC and ANTISYMMETRIC are defined by the caller).
 * sqrt, sin and cos are the compiler's: the C library's on the host (NumPy's there,
 * lqcdflow.kernels.compiled.numpy_trigonometry_differs), CUDA's on a GPU (CuPy's). SU(3)'s
 * arccos is the array library's own: su3_arccos_arguments writes its arguments, the caller
 * takes the arccos, sun_field_update receives the angles. */

#define GENERATORS (NC * NC - 1)

struct matrix {
    real re[NC][NC], im[NC][NC];
};

/* The complex N x N matrix at z. */
DEVICE struct matrix load_matrix(const real *z)
{
    struct matrix m;
    for (int i = 0; i < NC; i++)
        for (int j = 0; j < NC; j++) {
            m.re[i][j] = z[2 * (i * NC + j)];
            m.im[i][j] = z[2 * (i * NC + j) + 1];
        }
    return m;
}

/* Link mu at site `site` of a field of links (the block's or the padded field's layout). */
DEVICE struct matrix load_link(const real *links, site_t site, int mu)
{
    return load_matrix(links + 2 * (site * NDIM + mu) * NC * NC);
}

/* A B: re = ((a_i0 b_0j)_re + (a_i1 b_1j)_re ...), each product's parts added in turn
 * (lqcdflow.groups.matrices.mul_parts). */
DEVICE struct matrix product(const struct matrix *a, const struct matrix *b)
{
    struct matrix c;
    for (int i = 0; i < NC; i++)
        for (int j = 0; j < NC; j++) {
            real re = a->re[i][0] * b->re[0][j] - a->im[i][0] * b->im[0][j];
            real im = a->re[i][0] * b->im[0][j] + a->im[i][0] * b->re[0][j];
            for (int k = 1; k < NC; k++) {
                re = (re + a->re[i][k] * b->re[k][j]) - a->im[i][k] * b->im[k][j];
                im = (im + a->re[i][k] * b->im[k][j]) + a->im[i][k] * b->re[k][j];
            }
            c.re[i][j] = re;
            c.im[i][j] = im;
        }
    return c;
}

DEVICE struct matrix adjoint(const struct matrix *a)
{
    struct matrix c;
    for (int i = 0; i < NC; i++)
        for (int j = 0; j < NC; j++) {
            c.re[j][i] = a->re[i][j];
            c.im[j][i] = -a->im[i][j];
        }
    return c;
}

/* The staple `sum` <- term if it is the first, else sum + term. */
DEVICE void add_term(struct matrix *sum, const struct matrix *term, int first)
{
    for (int i = 0; i < NC; i++)
        for (int j = 0; j < NC; j++) {
            sum->re[i][j] = first ? term->re[i][j] : sum->re[i][j] + term->re[i][j];
            sum->im[i][j] = first ? term->im[i][j] : sum->im[i][j] + term->im[i][j];
        }
}

/* Re tr(A B^dagger) = sum_ij (Re A_ij Re B_ij + Im A_ij Im B_ij), (i, j) in turn. */
DEVICE real re_trace_mul_adjoint(const struct matrix *a, const struct matrix *b)
{
    real total = 0;
    for (int i = 0; i < NC; i++)
        for (int j = 0; j < NC; j++) {
            real term = a->re[i][j] * b->re[i][j];
            term = term + a->im[i][j] * b->im[i][j];
            total = i == 0 && j == 0 ? term : total + term;
        }
    return total;
}

/* A_mu += L(y)^dagger U_nu(y), L(y) = U_mu(y) U_nu(y + mu), y = x - nu, from the padded field
 * at padded site x (with mu and nu swapped: R(x - mu)^dagger U_mu(x - mu) of A_nu). */
DEVICE void add_lower_staple(const real *padded, site_t x, const site_t *layout, int mu,
                             int nu, struct matrix *staple)
{
    site_t y = x - layout[2 * nu + 1];
    struct matrix u_mu = load_link(padded, y, mu);
    struct matrix u_nu_up = load_link(padded, y + layout[2 * mu + 1], nu);
    struct matrix l = product(&u_mu, &u_nu_up);
    struct matrix l_dagger = adjoint(&l);
    struct matrix u_nu = load_link(padded, y, nu);
    struct matrix term = product(&l_dagger, &u_nu);
    add_term(staple, &term, 0);
}

/* Im tr(T_a M) of generator a (SU.algebra_coordinates). */
DEVICE real coordinate(const struct matrix *m, const site_t *generators, const real *c_k,
                       int a)
{
    site_t kind = generators[3 * a], j = generators[3 * a + 1], k = generators[3 * a + 2];
    if (kind == SYMMETRIC)
        return (real)0.5 * (m->im[j][k] + m->im[k][j]);
    if (kind == ANTISYMMETRIC)
        return (real)0.5 * (m->re[j][k] - m->re[k][j]);
    real diagonal = m->im[0][0];
    for (site_t i = 1; i < j; i++)
        diagonal = diagonal + m->im[i][i];
    diagonal = diagonal - (real)j * m->im[j][j];
    return ((real)0.5 * c_k[a]) * diagonal;
}

/* P(c): pi_{mu,a}(x) <- pi_{mu,a}(x) + (Im tr(T_a U_mu(x) A_mu(x)) (beta/N)) (-c), the staples
 * A_mu plane by plane (lqcdflow.kernels.sun_numba). `padded`: the links with one layer of
 * neighbours around the block (Lattice.padded); layout[2 mu], layout[2 mu + 1]: the block's
 * extent and the padded field's stride (in sites) of direction mu. */
KERNEL void sun_momentum_update(const real *padded, const site_t *layout, site_t volume,
                                real *pi, const site_t *generators, const real *c_k,
                                real beta_over_n, real minus_c)
{
    for (site_t i = blockIdx.x * blockDim.x + threadIdx.x; i < volume;
         i += blockDim.x * gridDim.x) {
        site_t x = 0, rest = i;
        for (int mu = NDIM - 1; mu >= 0; mu--) {
            x += (rest % layout[2 * mu] + 1) * layout[2 * mu + 1];
            rest /= layout[2 * mu];
        }
        struct matrix staple[NDIM];
        int started[NDIM];
        for (int mu = 0; mu < NDIM; mu++)
            started[mu] = 0;
        for (int mu = 0; mu < NDIM; mu++) {
            for (int nu = mu + 1; nu < NDIM; nu++) {
                struct matrix u_mu = load_link(padded, x, mu);
                struct matrix u_nu_up = load_link(padded, x + layout[2 * mu + 1], nu);
                struct matrix l = product(&u_mu, &u_nu_up);
                struct matrix u_nu = load_link(padded, x, nu);
                struct matrix u_mu_up = load_link(padded, x + layout[2 * nu + 1], mu);
                struct matrix r = product(&u_nu, &u_mu_up);
                struct matrix dagger = adjoint(&r);
                struct matrix term = product(&u_nu_up, &dagger);
                add_term(&staple[mu], &term, !started[mu]);
                started[mu] = 1;
                dagger = adjoint(&l);
                term = product(&u_mu_up, &dagger);
                add_term(&staple[nu], &term, !started[nu]);
                started[nu] = 1;
                add_lower_staple(padded, x, layout, mu, nu, &staple[mu]);
                add_lower_staple(padded, x, layout, nu, mu, &staple[nu]);
            }
        }
        for (int mu = 0; mu < NDIM; mu++) {
            struct matrix u = load_link(padded, x, mu);
            struct matrix m = product(&u, &staple[mu]);
            real *p = pi + (i * NDIM + mu) * GENERATORS;
            for (int a = 0; a < GENERATORS; a++)
                p[a] = p[a] + (coordinate(&m, generators, c_k, a) * beta_over_n) * minus_c;
        }
    }
}

/* X = sum_a (p_a c) T_a (SU.algebra_matrix of pi c), p the momenta of one link. */
DEVICE struct matrix algebra_matrix(const real *p, real c, const site_t *generators,
                                    const real *c_k)
{
    struct matrix x;
    for (int i = 0; i < NC; i++)
        for (int j = 0; j < NC; j++)
            x.re[i][j] = x.im[i][j] = 0;
    for (int a = 0; a < GENERATORS; a++) {
        real half = (real)0.5 * (p[a] * c);
        site_t kind = generators[3 * a], j = generators[3 * a + 1], k = generators[3 * a + 2];
        if (kind == SYMMETRIC) {
            x.re[j][k] = half;
            x.re[k][j] = half;
        } else if (kind == ANTISYMMETRIC) {
            x.im[j][k] = -half;
            x.im[k][j] = half;
        } else {
            real entry = c_k[a] * half;
            for (site_t m = 0; m < j; m++)
                x.re[m][m] = x.re[m][m] + entry;
            x.re[j][j] = x.re[j][j] - (real)j * entry;
        }
    }
    return x;
}

/* sin(x)/x, by its series below `series_below` (lqcdflow.groups.su_n._sinc). */
DEVICE real sinc(real x, real series_below)
{
    if (fabs(x) < series_below) {
        real x2 = x * x;
        return (real)1.0 - x2 / (real)6.0 * ((real)1.0 - x2 / (real)20.0
                                              * ((real)1.0 - x2 / (real)42.0));
    }
    return sin(x) / x;
}

/* (c_0, c_1) = ((1/3) tr X^3, (1/2) tr X^2) of SU(3), from X and X^2. */
DEVICE void invariants(const struct matrix *x, const struct matrix *x2, real *c0, real *c1)
{
    *c1 = (real)0.5 * re_trace_mul_adjoint(x, x);
    *c0 = re_trace_mul_adjoint(x2, x) / (real)3.0;
}

/* SU(3): the arccos argument |c_0| / c_0max (at most 1; 1 where c_1 < c1_below, where the
 * series needs no angle) of X = c P_mu(x) of each of the `links` links. */
KERNEL void su3_arccos_arguments(const real *pi, site_t links, real c,
                                 const site_t *generators, const real *c_k, real c1_below,
                                 real *out)
{
    for (site_t l = blockIdx.x * blockDim.x + threadIdx.x; l < links;
         l += blockDim.x * gridDim.x) {
        struct matrix x = algebra_matrix(pi + l * GENERATORS, c, generators, c_k);
        struct matrix x2 = product(&x, &x);
        real c0, c1;
        invariants(&x, &x2, &c0, &c1);
        if (c1 < c1_below) {
            out[l] = 1;
        } else {
            real c0max = (real)2.0 * (c1 / (real)3.0) * sqrt(c1 / (real)3.0);
            real ratio = fabs(c0) / c0max;
            out[l] = ratio > 1 ? 1 : ratio;
        }
    }
}

/* exp(iX) of the traceless Hermitian X (SU.exp_i): SU(2) in closed form; SU(3) with
 * Morningstar and Peardon's f_j (SU._su3_coefficients, theta = arccos(|c_0| / c_0max) given)
 * or their series below c1_below (SU._su3_series). */
DEVICE struct matrix exp_i(const struct matrix *x, real theta, real c1_below, real sinc_below)
{
    struct matrix e;
    if (NC == 2) {
        real angle = sqrt((real)0.5 * re_trace_mul_adjoint(x, x));
        real cos_angle = cos(angle), s = sinc(angle, sinc_below);
        for (int i = 0; i < NC; i++)
            for (int j = 0; j < NC; j++) {
                e.re[i][j] = -s * x->im[i][j];
                e.im[i][j] = s * x->re[i][j];
            }
        for (int d = 0; d < NC; d++)
            e.re[d][d] = e.re[d][d] + cos_angle;
        return e;
    }
    struct matrix x2 = product(x, x);
    real c0, c1, f[3][2];
    invariants(x, &x2, &c0, &c1);
    if (c1 < c1_below) {
        real zero = (real)0.0 * c0;
        f[0][0] = (real)1.0 + zero;
        f[0][1] = -c0 / (real)6.0;
        f[1][0] = c0 / (real)24.0;
        f[1][1] = (real)1.0 - c1 / (real)6.0;
        f[2][0] = c1 / (real)24.0 - (real)0.5;
        f[2][1] = zero;
    } else {
        real u = sqrt(c1 / (real)3.0) * cos(theta / (real)3.0);
        real w = sqrt(c1) * sin(theta / (real)3.0);
        real u2 = u * u, w2 = w * w;
        real xi0 = sinc(w, sinc_below), cos_w = cos(w);
        real e2r = cos((real)2.0 * u), e2i = sin((real)2.0 * u);
        real emr = cos(u), emi = -sin(u);
        real br = (real)8.0 * u2 * cos_w, bi = (real)2.0 * u * ((real)3.0 * u2 + w2) * xi0;
        real h0r = (u2 - w2) * e2r + (emr * br - emi * bi);
        real h0i = (u2 - w2) * e2i + (emr * bi + emi * br);
        br = (real)2.0 * u * cos_w;
        bi = -((real)3.0 * u2 - w2) * xi0;
        real h1r = (real)2.0 * u * e2r - (emr * br - emi * bi);
        real h1i = (real)2.0 * u * e2i - (emr * bi + emi * br);
        br = cos_w;
        bi = (real)3.0 * u * xi0;
        real h2r = e2r - (emr * br - emi * bi);
        real h2i = e2i - (emr * bi + emi * br);
        real d = (real)9.0 * u2 - w2;
        real sign = c0 < 0 ? (real)-1.0 : (real)1.0;
        f[0][0] = h0r / d;
        f[0][1] = sign * (h0i / d);
        f[1][0] = sign * (h1r / d);
        f[1][1] = h1i / d;
        f[2][0] = h2r / d;
        f[2][1] = sign * (h2i / d);
    }
    for (int i = 0; i < NC; i++)
        for (int j = 0; j < NC; j++) {
            e.re[i][j] = ((f[1][0] * x->re[i][j] - f[1][1] * x->im[i][j])
                          + f[2][0] * x2.re[i][j]) - f[2][1] * x2.im[i][j];
            e.im[i][j] = ((f[1][0] * x->im[i][j] + f[1][1] * x->re[i][j])
                          + f[2][0] * x2.im[i][j]) + f[2][1] * x2.re[i][j];
        }
    for (int d = 0; d < NC; d++) {
        e.re[d][d] = e.re[d][d] + f[0][0];
        e.im[d][d] = e.im[d][d] + f[0][1];
    }
    return e;
}

/* Q(c): U <- exp(i c P) U for each of the `links` links, in place; theta[l] SU(3)'s angle
 * (su3_arccos_arguments), unused for SU(2). */
KERNEL void sun_field_update(real *field, const real *pi, site_t links, real c,
                             const real *theta, const site_t *generators, const real *c_k,
                             real c1_below, real sinc_below)
{
    for (site_t l = blockIdx.x * blockDim.x + threadIdx.x; l < links;
         l += blockDim.x * gridDim.x) {
        struct matrix x = algebra_matrix(pi + l * GENERATORS, c, generators, c_k);
        struct matrix e = exp_i(&x, theta[l], c1_below, sinc_below);
        real *z = field + 2 * l * NC * NC;
        struct matrix u = load_matrix(z);
        struct matrix v = product(&e, &u);
        for (int i = 0; i < NC; i++)
            for (int j = 0; j < NC; j++) {
                z[2 * (i * NC + j)] = v.re[i][j];
                z[2 * (i * NC + j) + 1] = v.im[i][j];
            }
    }
}
