/* phi^4 molecular dynamics on one rank's block, one thread per site (a grid-stride loop),
 * bitwise equal to the NumPy path (lqcdflow.kernels.phi4_numba has the formulas and their
 * order; lqcdflow.kernels.device the rules: no FMA contraction, constants in the field's type).
 *
 * Compiled after fields.cu (neighbours(), field_update: Q(c)) by lqcdflow.kernels.device,
 * with nvrtc for a GPU or with the C compiler for the host (where the tests check it against
 * the NumPy path), with NDIM and the force terms' bits HOPPING and POTENTIAL
 * (lqcdflow.kernels.phi4_terms) defined.
 */

/* P(c) of force term `term` (HOPPING, POTENTIAL or both):
 *   pi_x <- pi_x + (n_x (-h) + ((phi_x^2) (4 c4) + 2 c2) phi_x) (-c),
 *   n_x = (phi(x + e_0) + phi(x - e_0)) + (phi(x + e_1) + phi(x - e_1)) + ...
 * with the hopping or the potential part alone for one term. */
KERNEL void phi4_momentum_update(const real *phi, real *pi, const real *halo,
                                 const site_t *dims, site_t volume, int term,
                                 real minus_h, real four_c4, real two_c2, real minus_c)
{
    for (site_t i = blockIdx.x * blockDim.x + threadIdx.x; i < volume;
         i += blockDim.x * gridDim.x) {
        real n = 0, p = phi[i], force;
        if (term & HOPPING) {
            for (int mu = 0; mu < NDIM; mu++) {
                struct neighbour_sites at = neighbours(dims, mu, i);
                real up = at.up_face ? halo[at.up] : phi[at.up];
                real down = at.down_face ? halo[at.down] : phi[at.down];
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
