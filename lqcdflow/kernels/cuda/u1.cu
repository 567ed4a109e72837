/* U(1) molecular dynamics on one rank's block, one thread per site (a grid-stride loop): the
 * two passes of lqcdflow.kernels.u1_numba (its docstring has the formulas and their order),
 * compiled after fields.cu (neighbours(), field_update: Q(c)) by lqcdflow.kernels.device.
 * theta and pi hold D angles per site, sines P = D (D - 1) / 2 per site, planes (mu, nu),
 * mu < nu, in order. The sine is the compiler's: the C library's on the host (NumPy's there,
 * lqcdflow.kernels.compiled.numpy_trigonometry_differs), CUDA's on a GPU (CuPy's). */

#define MAX_DIMENSIONS 8

/* Pass 1: s_{mu nu}(x) = sin(((theta_mu(x) + theta_nu(x + mu)) - theta_mu(x + nu))
 * - theta_nu(x)), the links beyond the block from `halo`, the faces of the upper
 * neighbours. */
KERNEL void u1_plaquette_sines(const real *theta, const real *halo, const site_t *dims,
                               int ndim, site_t volume, real *sines)
{
    for (site_t i = blockIdx.x * blockDim.x + threadIdx.x; i < volume;
         i += blockDim.x * gridDim.x) {
        int p = 0;
        for (int mu = 0; mu < ndim; mu++) {
            struct neighbour_sites along_mu = neighbours(dims, mu, i);
            for (int nu = mu + 1; nu < ndim; nu++) {
                struct neighbour_sites along_nu = neighbours(dims, nu, i);
                const real *at_mu = along_mu.up_face ? halo : theta;
                const real *at_nu = along_nu.up_face ? halo : theta;
                real nu_up = at_mu[along_mu.up * ndim + nu];
                real mu_up = at_nu[along_nu.up * ndim + mu];
                real angle = ((theta[i * ndim + mu] + nu_up) - mu_up) - theta[i * ndim + nu];
                sines[i * (ndim * (ndim - 1) / 2) + p] = sin(angle);
                p++;
            }
        }
    }
}

/* Pass 2: f = 0, then plane by plane f_mu += s(x) - s(x - nu), f_nu -= s(x) - s(x - mu);
 * pi_mu(x) <- pi_mu(x) + (f_mu beta) (-c). The sines beyond the block from `halo`, the
 * faces of the lower neighbours. */
KERNEL void u1_momentum_update(const real *sines, const real *halo, const site_t *dims,
                               int ndim, site_t volume, real *pi, real beta, real minus_c)
{
    int planes = ndim * (ndim - 1) / 2;
    for (site_t i = blockIdx.x * blockDim.x + threadIdx.x; i < volume;
         i += blockDim.x * gridDim.x) {
        real force[MAX_DIMENSIONS];
        for (int mu = 0; mu < ndim; mu++)
            force[mu] = 0;
        int p = 0;
        for (int mu = 0; mu < ndim; mu++) {
            struct neighbour_sites along_mu = neighbours(dims, mu, i);
            for (int nu = mu + 1; nu < ndim; nu++) {
                struct neighbour_sites along_nu = neighbours(dims, nu, i);
                real s = sines[i * planes + p];
                real below_nu = (along_nu.down_face ? halo : sines)[along_nu.down * planes + p];
                real below_mu = (along_mu.down_face ? halo : sines)[along_mu.down * planes + p];
                force[mu] = force[mu] + (s - below_nu);
                force[nu] = force[nu] - (s - below_mu);
                p++;
            }
        }
        for (int mu = 0; mu < ndim; mu++)
            pi[i * ndim + mu] = pi[i * ndim + mu] + (force[mu] * beta) * minus_c;
    }
}
