/* phi^4 molecular dynamics on one rank's block, one thread per site (a grid-stride loop),
 * bitwise equal to the NumPy path (lqcdflow.kernels.phi4_numba has the formulas and their
 * order; lqcdflow.kernels.device the rules: no FMA contraction, constants in the field's type).
 *
 * real, site_t, KERNEL and the CUDA built-ins come from the prelude of
 * lqcdflow.kernels.device, which compiles this file with nvrtc for a GPU, or with the C
 * compiler for the host (where the tests check it against the NumPy path).
 *
 * dims[5 mu + k], k = 0..4: extent L_mu, stride s_mu (C order), whether mu is split over
 * ranks, and where the faces beyond the block in +e_mu and -e_mu start in the halo (the
 * layout of lqcdflow.kernels.fused.FusedMD.halo: each face in C order without axis mu).
 */

#define HOPPING 1
#define POTENTIAL 2

/* P(c) of force term `term` (HOPPING, POTENTIAL or both):
 *   pi_x <- pi_x + (n_x (-h) + ((phi_x^2) (4 c4) + 2 c2) phi_x) (-c),
 *   n_x = (phi(x + e_0) + phi(x - e_0)) + (phi(x + e_1) + phi(x - e_1)) + ...
 * with the hopping or the potential part alone for one term. */
KERNEL void phi4_momentum_update(const real *phi, real *pi, const real *halo,
                                 const site_t *dims, int ndim, site_t volume, int term,
                                 real minus_h, real four_c4, real two_c2, real minus_c)
{
    for (site_t i = blockIdx.x * blockDim.x + threadIdx.x; i < volume;
         i += blockDim.x * gridDim.x) {
        real n = 0, p = phi[i], force;
        if (term & HOPPING) {
            for (int mu = 0; mu < ndim; mu++) {
                const site_t *d = dims + 5 * mu;
                site_t extent = d[0], stride = d[1];
                site_t x = (i / stride) % extent;
                site_t face = (i / (stride * extent)) * stride + i % stride;
                real up, down;
                if (x != extent - 1)
                    up = phi[i + stride];
                else
                    up = d[2] ? halo[d[3] + face] : phi[i - (extent - 1) * stride];
                if (x != 0)
                    down = phi[i - stride];
                else
                    down = d[2] ? halo[d[4] + face] : phi[i + (extent - 1) * stride];
                n = mu == 0 ? up + down : n + (up + down);
            }
        }
        if (term == POTENTIAL)
            force = ((p * p) * four_c4 + two_c2) * p;
        else if (term == HOPPING)
            force = n * minus_h;
        else
            force = n * minus_h + ((p * p) * four_c4 + two_c2) * p;
        pi[i] = pi[i] + force * minus_c;
    }
}

/* Q(c): phi_x <- phi_x + pi_x c. */
KERNEL void phi4_field_update(real *phi, const real *pi, site_t volume, real c)
{
    for (site_t i = blockIdx.x * blockDim.x + threadIdx.x; i < volume;
         i += blockDim.x * gridDim.x)
        phi[i] = phi[i] + pi[i] * c;
}
