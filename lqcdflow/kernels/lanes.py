"""Complex N x N matrices at LANES sites at once, for compiled kernels: the parts (re, im) of
a run of sites' matrices as scratch arrays (N, N, LANES), the sites innermost, so that each
real operation of a matrix product is one loop over the sites, which the compiler vectorises
(one site at a time, the products' chains of dependent additions leave the CPU waiting: SU(3)'s
momentum update ran at 1.1x the array path's speed on 8^4).

The operations are those of lqcdflow.groups.matrices entry by entry (each real operation
rounded alone, k in turn in a product), so the results are its bits.

Kernels read a field's matrices from its parts (:func:`split_parts`: real arrays with the sites
innermost), made once per update, rather than from the complex field itself: a link is read
some 16 times in a momentum update. The functions are inlined where they are called
(``inline="always"``): a call of a compiled function passes each array as a structure and
counts its references, which made SU(3)'s momentum update 1.8x and its link update 2.8x
slower on 16^4, for a first compilation of 72 s instead of 12 (cached afterwards).
"""

import numba

from lqcdflow.kernels.compiled import block_range
from lqcdflow.kernels.jit import kernel

LANES = 16  # sites a kernel takes at once
# The sites are cut into at most this many blocks for the threads; each block has its own
# scratch matrices.
BLOCKS = 64


@kernel(inline="always")
def blocks(sites):
    """Blocks of sites for the threads: BLOCKS, or fewer where that leaves under LANES sites
    to a block (each block computes whole LANES at a time)."""
    return max(1, min(BLOCKS, -(-sites // LANES)))


@kernel(inline="always")
def load(links, sites, shift, mu, re, im):
    """(re, im)[:, :, b] <- the parts of the link U_mu at site sites[b] + shift."""
    n = re.shape[0]
    for b in range(sites.shape[0]):
        site = sites[b] + shift
        for i in range(n):
            for j in range(n):
                z = links[site, mu, i, j]
                re[i, j, b] = z.real
                im[i, j, b] = z.imag


@kernel(parallel=True)
def split_parts(field, re, im):
    """(re, im)[mu, i, j, s] <- the parts of field[s, mu, i, j]: a field of complex matrices
    (sites, D, N, N) as real arrays with the sites innermost, so that the entries of a run of
    consecutive sites are contiguous (:func:`load_parts`)."""
    sites, ndim, n = field.shape[0], field.shape[1], field.shape[2]
    parts = blocks(sites)
    for block in numba.prange(parts):  # runs of LANES sites: their matrices stay in L1
        first, end = block_range(block, parts, sites)
        for start in range(first, end, LANES):
            stop = min(start + LANES, end)
            for mu in range(ndim):
                for i in range(n):
                    for j in range(n):
                        for s in range(start, stop):
                            z = field[s, mu, i, j]
                            re[mu, i, j, s] = z.real
                            im[mu, i, j, s] = z.imag


@kernel(inline="always")
def load_parts(parts_re, parts_im, mu, sites, shift, re, im):
    """(re, im)[:, :, b] <- the parts of the link U_mu at site sites[b] + shift, from a
    field's parts (:func:`split_parts`)."""
    n = re.shape[0]
    for i in range(n):
        for j in range(n):
            source_re, source_im = parts_re[mu, i, j], parts_im[mu, i, j]
            target_re, target_im = re[i, j], im[i, j]
            for b in range(sites.shape[0]):
                target_re[b] = source_re[sites[b] + shift]
                target_im[b] = source_im[sites[b] + shift]


@kernel(inline="always")
def adjoint(re, im, out_re, out_im, lanes):
    """(out_re, out_im) <- (Re A^T, -Im A^T), as lqcdflow.groups.matrices.parts(adjoint)."""
    n = re.shape[0]
    for i in range(n):
        for j in range(n):
            source_re, source_im = re[i, j], im[i, j]
            target_re, target_im = out_re[j, i], out_im[j, i]
            for b in range(lanes):
                target_re[b] = source_re[b]
                target_im[b] = -source_im[b]


@kernel(inline="always")
def mul(ar, ai, br, bi, cr, ci, lanes):
    """(cr, ci) <- the parts of A B, in the operations of mul_parts."""
    n = ar.shape[0]
    if n == 3:  # written out: the sums stay in registers
        for i in range(3):
            a0r, a0i, a1r, a1i = ar[i, 0], ai[i, 0], ar[i, 1], ai[i, 1]
            a2r, a2i = ar[i, 2], ai[i, 2]
            for j in range(3):
                b0r, b0i, b1r, b1i, b2r, b2i = br[0, j], bi[0, j], br[1, j], bi[1, j], br[2, j], \
                    bi[2, j]
                re, im = cr[i, j], ci[i, j]
                for b in range(lanes):
                    re[b] = ((((a0r[b] * b0r[b] - a0i[b] * b0i[b]) + a1r[b] * b1r[b])
                              - a1i[b] * b1i[b]) + a2r[b] * b2r[b]) - a2i[b] * b2i[b]
                    im[b] = ((((a0r[b] * b0i[b] + a0i[b] * b0r[b]) + a1r[b] * b1i[b])
                              + a1i[b] * b1r[b]) + a2r[b] * b2i[b]) + a2i[b] * b2r[b]
        return
    for i in range(n):
        for j in range(n):
            re, im = cr[i, j], ci[i, j]
            a_r, a_i, b_r, b_i = ar[i, 0], ai[i, 0], br[0, j], bi[0, j]
            for b in range(lanes):
                re[b] = a_r[b] * b_r[b] - a_i[b] * b_i[b]
                im[b] = a_r[b] * b_i[b] + a_i[b] * b_r[b]
            for k in range(1, n):
                a_r, a_i, b_r, b_i = ar[i, k], ai[i, k], br[k, j], bi[k, j]
                for b in range(lanes):
                    re[b] = (re[b] + a_r[b] * b_r[b]) - a_i[b] * b_i[b]
                    im[b] = (im[b] + a_r[b] * b_i[b]) + a_i[b] * b_r[b]


@kernel(inline="always")
def add_term(sr, si, tr, ti, first, lanes):
    """The staple (sr, si) <- the term (tr, ti) if it is the first, else staple + term."""
    n = sr.shape[0]
    for i in range(n):
        for j in range(n):
            s_r, s_i, t_r, t_i = sr[i, j], si[i, j], tr[i, j], ti[i, j]
            for b in range(lanes):
                if first:
                    s_r[b], s_i[b] = t_r[b], t_i[b]
                else:
                    s_r[b], s_i[b] = s_r[b] + t_r[b], s_i[b] + t_i[b]


@kernel(inline="always")
def re_trace_mul_adjoint(ar, ai, br, bi, b):
    """Re tr(A B^dagger) = sum_ij [Re A_ij Re B_ij + Im A_ij Im B_ij], (i, j) in turn, of site
    b's matrices."""
    n = ar.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(n):
            term = ar[i, j, b] * br[i, j, b]
            term = term + ai[i, j, b] * bi[i, j, b]
            total = term if i == 0 and j == 0 else total + term
    return total
