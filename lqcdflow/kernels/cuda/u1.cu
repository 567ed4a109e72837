/* U(1) molecular dynamics on one rank's block, one thread per site (a grid-stride loop): the
 * two passes of lqcdflow.kernels.u1_numba (its docstring has the formulas and their order),
 * compiled after fields.cu (neighbours(), field_update: Q(c)) by lqcdflow.kernels.device with
 * NDIM defined. theta and pi hold NDIM angles per site, sines PLANES per site, the planes
 * (mu, nu), mu < nu, in order. The sine is the compiler's: the C library's on the host
 * (NumPy's there, lqcdflow.kernels.compiled.numpy_trigonometry_differs), CUDA's on a GPU
 * (CuPy's). */

#define PLANES (NDIM * (NDIM - 1) / 2)

/* Pass 1: s_{mu nu}(x) = sin(((theta_mu(x) + theta_nu(x + mu)) - theta_mu(x + nu))
 * - theta_nu(x)), the links beyond the block from `halo`, the faces of the upper
 * neighbours. */
KERNEL void u1_plaquette_sines(const real *theta, const real *halo, const site_t *dims,
                               site_t volume, real *sines)
{
    for (site_t i = blockIdx.x * blockDim.x + threadIdx.x; i < volume;
         i += blockDim.x * gridDim.x) {
        struct neighbour_sites at[NDIM];
        for (int mu = 0; mu < NDIM; mu++)
            at[mu] = neighbours(dims, mu, i);
        int p = 0;
        for (int mu = 0; mu < NDIM; mu++) {
            for (int nu = mu + 1; nu < NDIM; nu++) {
                real nu_up = (at[mu].up_face ? halo : theta)[at[mu].up * NDIM + nu];
                real mu_up = (at[nu].up_face ? halo : theta)[at[nu].up * NDIM + mu];
                real angle = ((theta[i * NDIM + mu] + nu_up) - mu_up) - theta[i * NDIM + nu];
                sines[i * PLANES + p] = sin(angle);
                p++;
            }
        }
    }
}

/* Pass 2: f = 0, then plane by plane f_mu += s(x) - s(x - nu), f_nu -= s(x) - s(x - mu);
 * pi_mu(x) <- pi_mu(x) + (f_mu beta) (-c). The sines beyond the block from `halo`, the
 * faces of the lower neighbours. */
KERNEL void u1_momentum_update(const real *sines, const real *halo, const site_t *dims,
                               site_t volume, real *pi, real beta, real minus_c)
{
    for (site_t i = blockIdx.x * blockDim.x + threadIdx.x; i < volume;
         i += blockDim.x * gridDim.x) {
        struct neighbour_sites at[NDIM];
        real force[NDIM];
        for (int mu = 0; mu < NDIM; mu++) {
            at[mu] = neighbours(dims, mu, i);
            force[mu] = 0;
        }
        int p = 0;
        for (int mu = 0; mu < NDIM; mu++) {
            for (int nu = mu + 1; nu < NDIM; nu++) {
                real s = sines[i * PLANES + p];
                real below_nu = (at[nu].down_face ? halo : sines)[at[nu].down * PLANES + p];
                real below_mu = (at[mu].down_face ? halo : sines)[at[mu].down * PLANES + p];
                force[mu] = force[mu] + (s - below_nu);
                force[nu] = force[nu] - (s - below_mu);
                p++;
            }
        }
        for (int mu = 0; mu < NDIM; mu++)
            pi[i * NDIM + mu] = pi[i * NDIM + mu] + (force[mu] * beta) * minus_c;
    }
}
