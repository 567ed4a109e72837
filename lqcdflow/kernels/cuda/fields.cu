/* What the kernels of every theory share: where a site's neighbours are, and Q(c) of fields in
 * a vector space (or of angles). The prelude of lqcdflow.kernels.device defines real, site_t
 * and KERNEL; for the host, the CUDA built-ins of a launch of one "thread".
 *
 * dims[5 mu + k], k = 0..4: extent L_mu, stride s_mu (C order, in sites), whether mu is split
 * over ranks, and where the faces beyond the block in +e_mu and -e_mu start in the halo (the
 * layout of lqcdflow.kernels.fused.FusedMD.halo: each face in C order without axis mu, in
 * sites; a field of C components per site reads element C face + c of a face).
 */

/* The neighbours x + e_mu and x - e_mu of site x: a site of the block (the wrap of an unsplit
 * direction included), or, where up_face / down_face, a site of the face in the halo. */
struct neighbour_sites {
    site_t up, down;
    int up_face, down_face;
};

DEVICE struct neighbour_sites neighbours(const site_t *dims, int mu, site_t x)
{
    const site_t *d = dims + 5 * mu;
    site_t extent = d[0], stride = d[1], split = d[2];
    site_t coordinate = (x / stride) % extent;
    site_t face = (x / (stride * extent)) * stride + x % stride;
    struct neighbour_sites at;
    at.up_face = split && coordinate == extent - 1;
    at.down_face = split && coordinate == 0;
    if (coordinate != extent - 1)
        at.up = x + stride;
    else
        at.up = split ? d[3] + face : x - (extent - 1) * stride;
    if (coordinate != 0)
        at.down = x - stride;
    else
        at.down = split ? d[4] + face : x + (extent - 1) * stride;
    return at;
}

/* Q(c): U <- U + P c, element by element (`size` of them). */
KERNEL void field_update(real *field, const real *pi, site_t size, real c)
{
    for (site_t i = blockIdx.x * blockDim.x + threadIdx.x; i < size;
         i += blockDim.x * gridDim.x)
        field[i] = field[i] + pi[i] * c;
}
