"""A periodic D-dimensional lattice split over the ranks of a Cartesian communicator.

The lattice object owns the communicator: physics code asks it for shifted fields, neighbour
sums, global sums and random numbers per site, and never sees MPI.

Conventions
-----------
- Global site x = (x_0, ..., x_{D-1}), 0 <= x_mu < L_mu, periodic; direction 0 is "time".
- Global lexicographic index: i(x) = sum_mu x_mu s_mu with s_{D-1} = 1, s_mu = s_{mu+1} L_{mu+1}
  (C order, the order of HDF5 datasets).
- Rank with Cartesian coordinates c holds the block x_mu in [c_mu l_mu, (c_mu + 1) l_mu),
  l_mu = L_mu / g_mu, stored as a C-contiguous array of shape (l_0, ..., l_{D-1}) + site
  shape, no halo. A field has any per-site shape (phi^4: ``()``, U(1) link angles: ``(D,)``,
  SU(N) links: ``(D, N, N)``) and dtype (real or complex); lattice axes come first, the site
  shape last, in memory, in HDF5 files and in gathered arrays alike.
- Degree of freedom k (0 <= k < n, n the number of numbers per site, in C order of the site
  shape) of site x has the global index i(x) n + k (:meth:`Lattice.dof_index`): the counter of
  its random numbers and the position in checksums.
"""

import math

import numpy as np
from mpi4py import MPI

from lqcdflow.backend import Backend, make_backend
from lqcdflow.parallel.grid import check_grid, choose_grid
from lqcdflow.parallel.reduce import reproducible_sum

SLAB_BYTES = 256 * 1024  # bytes of one field per slab (see Lattice.slabs): a few fit in L2


class Lattice:
    """A domain-decomposed periodic lattice.

    Parameters
    ----------
    shape : sequence of int
        Global extents (L_0, ..., L_{D-1}), any D >= 1.
    comm : mpi4py communicator, optional
        Ranks to split over (default: ``MPI.COMM_WORLD``).
    grid : sequence of int or None
        Process grid (g_0, ..., g_{D-1}); ``None`` chooses the one with the smallest halo.
    backend : Backend, optional
        NumPy (default) or CuPy arrays.
    gpu_aware_mpi : bool
        Hand GPU arrays to MPI directly (needs a CUDA-aware MPI); otherwise they are staged
        through host buffers.

    Examples
    --------
    >>> lat = Lattice((4, 6), comm=MPI.COMM_SELF)
    >>> lat.local_shape, lat.volume
    ((4, 6), 24)
    """

    def __init__(self, shape, comm=None, grid=None, backend: Backend | None = None,
                 gpu_aware_mpi=False):
        self.shape = tuple(int(L) for L in shape)
        if not self.shape or any(L < 1 for L in self.shape):
            raise ValueError(f"lattice extents must be positive integers, got {list(shape)}")
        comm = comm if comm is not None else MPI.COMM_WORLD
        grid = tuple(grid) if grid is not None else choose_grid(self.shape, comm.Get_size())
        check_grid(self.shape, grid, comm.Get_size())
        self.grid = grid
        self.comm = comm.Create_cart(list(grid), periods=[True] * len(grid), reorder=False)
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.coords = tuple(self.comm.Get_coords(self.rank))
        self.backend = backend or make_backend()
        self.xp = self.backend.xp
        self.gpu_aware_mpi = gpu_aware_mpi
        self.local_shape = tuple(L // g for L, g in zip(self.shape, grid))
        self.offset = tuple(c * l for c, l in zip(self.coords, self.local_shape))
        self.volume = math.prod(self.shape)
        self.local_volume = math.prod(self.local_shape)
        # neighbours[mu] = (rank at c - e_mu, rank at c + e_mu)
        self.neighbours = [self.comm.Shift(mu, 1) for mu in range(self.ndim)]
        self._site_index = None
        self._line_comms = {}  # mu -> the ranks of this rank's line in direction mu
        self._pair_scratch = {}  # (dtype, site shape) -> one slab, for neighbour_sum

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return (f"Lattice(shape={list(self.shape)}, grid={list(self.grid)}, "
                f"local={list(self.local_shape)}, backend={self.backend.name})")

    # ----------------------------------------------------------------- fields and indices
    def zeros(self, site_shape=(), dtype=None):
        """A local field of zeros with per-site shape ``site_shape``."""
        return self.xp.zeros(self.local_shape + tuple(site_shape),
                             dtype=dtype or self.backend.dtype)

    def site_shape(self, field):
        """The per-site shape of a local field (its axes after the lattice axes)."""
        return tuple(field.shape[self.ndim:])

    def local_slices(self):
        """Slices of the global array held by this rank."""
        return tuple(slice(o, o + l) for o, l in zip(self.offset, self.local_shape))

    @property
    def site_index(self):
        """Global lexicographic index of every local site (uint64 array of the local shape)."""
        if self._site_index is None:
            xp = self.xp
            index = xp.zeros(self.local_shape, dtype=xp.uint64)
            stride = 1
            for mu in reversed(range(self.ndim)):
                coord = xp.arange(self.offset[mu], self.offset[mu] + self.local_shape[mu],
                                  dtype=xp.uint64) * np.uint64(stride)
                index += coord.reshape([-1 if nu == mu else 1 for nu in range(self.ndim)])
                stride *= self.shape[mu]
            self._site_index = index
        return self._site_index

    def dof_index(self, site_shape=()):
        """Global index i(x) n + k of degree of freedom k of every local site x (uint64 array
        of shape local shape + ``site_shape``; n = prod(site_shape), k in C order).

        Equal to :attr:`site_index` for one number per site. Below 2^64 for any lattice that
        fits in memory (2^33 sites x 36 numbers is 2^38.2).
        """
        n = math.prod(site_shape)
        if n == 1:
            return self.site_index.reshape(self.local_shape + tuple(site_shape))
        xp = self.xp
        k = xp.arange(n, dtype=xp.uint64).reshape(site_shape)
        index = self.site_index.reshape(self.local_shape + (1,) * len(site_shape))
        return index * np.uint64(n) + k

    def gather(self, field, root=0):
        """The global field as a NumPy array on ``root`` (None on the other ranks)."""
        local = np.ascontiguousarray(self.backend.asnumpy(field))
        blocks = self.comm.gather((self.offset, local), root=root)
        if self.rank != root:
            return None
        out = np.empty(self.shape + local.shape[self.ndim:], dtype=local.dtype)
        for offset, block in blocks:
            out[tuple(slice(o, o + n) for o, n in zip(offset, block.shape))] = block
        return out

    def scatter(self, global_field):
        """This rank's block of a global NumPy field (given on every rank) as a backend array."""
        return self.xp.asarray(np.ascontiguousarray(global_field[self.local_slices()]))

    # ----------------------------------------------------------------- global reductions
    def sum(self, field):
        """Reproducible global sum over all sites and all per-site components of a local field.

        A Python float (complex for complex fields), identical on all ranks and decompositions.
        """
        total = self._reproducible(field, None, self.volume * math.prod(self.site_shape(field)))
        return complex(total) if self.xp.iscomplexobj(field) else float(total)

    def site_sum(self, field):
        """Reproducible sum over all sites, per component: sum_x field(x) (NumPy array of the
        site shape, complex for complex fields; the same on every rank)."""
        return self._reproducible(field, tuple(range(self.ndim)), self.volume)

    def timeslice_sum(self, field):
        """S(t) = sum over x with x_0 = t of field(x), for every global t (reproducible).

        Returns a NumPy array of shape (L_0,) + site shape, the same on every rank.
        """
        xp = self.xp
        partial = xp.zeros((self.shape[0],) + field.shape[1:], dtype=field.dtype)
        partial[self.offset[0]:self.offset[0] + self.local_shape[0]] = field
        per_slice = self.volume // self.shape[0]
        return self._reproducible(partial, tuple(range(1, self.ndim)), per_slice)

    def line_sum(self, field, mu):
        """sum_{x_mu} field(x) along the lines of direction mu, reproducibly: an array of the
        local shape with axis mu of length 1 (+ site shape), the same on every rank of a line.

        The line's ranks add exact integer digits (:mod:`lqcdflow.parallel.reduce`) over the
        sub-communicator of direction mu, each line's digits below the exponent of its own
        largest term, so the sums do not depend on the decomposition. Collective over all ranks.
        """
        total = self._reproducible(field, (mu,), self.shape[mu], self._line_comm(mu))
        return self.xp.expand_dims(self.xp.asarray(total), mu)

    def line_product(self, field, mu, multiply):
        """f(x) f(x + e_mu) ... f(x + (L_mu - 1) e_mu) along the lines of direction mu, from
        x_mu = 0 on the left: an array of the local shape with axis mu of length 1 (+ site
        shape), the same on every rank of a line.

        ``multiply(a, b)`` multiplies two such arrays site by site (e.g. matrices). The factors
        are taken one at a time from the left end of the line, the partial product handed from
        rank to rank along it, so the association ((f_0 f_1) f_2) ... and hence every bit are
        those of one rank, on any decomposition. Collective over all ranks.
        """
        xp, n = self.xp, self.local_shape[mu]
        comm, g = self._line_comm(mu), self.grid[mu]
        coord = self.coords[mu]
        face = self.local_shape[:mu] + (1,) + self.local_shape[mu + 1:] + field.shape[self.ndim:]
        if coord == 0:
            product, start = self._face(field, mu, 0), 1
        else:
            received = np.empty(face, dtype=field.dtype)
            comm.Recv(received, source=coord - 1, tag=mu)
            product, start = xp.asarray(received), 0
        for t in range(start, n):
            product = multiply(product, self._face(field, mu, t))
        if g == 1:
            return xp.ascontiguousarray(product)
        host = np.ascontiguousarray(self.backend.asnumpy(product)) if coord == g - 1 \
            else np.empty(face, dtype=field.dtype)
        if coord < g - 1:
            comm.Send(np.ascontiguousarray(self.backend.asnumpy(product)), dest=coord + 1,
                      tag=mu)
        comm.Bcast(host, root=g - 1)
        return xp.asarray(host)

    def max(self, field):
        """The largest entry of ``field`` over all ranks (a float, the same on every rank)."""
        local = float(field.max()) if field.size else -math.inf
        return self.comm.allreduce(local, op=MPI.MAX)

    def _line_comm(self, mu):
        """The Cartesian sub-communicator of this rank's line in direction mu (its rank in it is
        the coordinate coords[mu])."""
        if mu not in self._line_comms:
            self._line_comms[mu] = self.comm.Sub([nu == mu for nu in range(self.ndim)])
        return self._line_comms[mu]

    def _reproducible(self, field, axes, count, comm=None):
        """reproducible_sum of ``field`` over ``axes`` (None: all) and the ranks of ``comm``
        (default: all); complex fields are summed as (re, im) pairs, each part exactly, and
        put together again."""
        comm = self.comm if comm is None else comm
        if not self.xp.iscomplexobj(field):
            return reproducible_sum(field, comm, count, axes=axes, xp=self.xp)
        pairs = self.xp.ascontiguousarray(field).view(field.real.dtype)
        pairs = pairs.reshape(field.shape + (2,))
        axes = tuple(range(field.ndim)) if axes is None else axes
        total = reproducible_sum(pairs, comm, count, axes=axes, xp=self.xp)
        return total[..., 0] + 1j * total[..., 1]

    # ----------------------------------------------------------------- halo exchange
    def _face(self, field, mu, index):
        sl = [slice(None)] * self.ndim
        sl[mu] = slice(index, index + 1)
        return field[tuple(sl)]

    def _start_exchange(self, field, directions, receive=None):
        """Post nonblocking sends and receives of faces for each (mu, sign) in ``directions``.

        For (mu, +1) a rank needs the face x_mu = 0 of its upper neighbour (its field at
        local x_mu = l_mu); for (mu, -1) the face x_mu = l_mu - 1 of its lower neighbour.
        Directions with one rank take the face from the local field (periodic wrap).
        GPU faces go to MPI directly when it is CUDA-aware, else through host copies.
        ``receive``: {(mu, sign): a C-contiguous backend array of the face's size}, received
        into where MPI can write to it (CPU arrays; GPU ones with CUDA-aware MPI).
        Returns {(mu, sign): face, or (requests, receive buffer, send buffer)}.
        """
        xp = self.xp
        device_buffers = self.backend.on_gpu and self.gpu_aware_mpi
        mpi_writes = device_buffers or not self.backend.on_gpu
        pending, sends = {}, {}
        for mu, sign in directions:
            src_index = 0 if sign > 0 else self.local_shape[mu] - 1
            face = self._face(field, mu, src_index)
            if self.grid[mu] == 1:
                pending[(mu, sign)] = face
            else:
                face = xp.ascontiguousarray(face)
                sends[(mu, sign)] = face if device_buffers else self.backend.asnumpy(face)
        if device_buffers:
            self.backend.synchronize()  # MPI reads device memory outside CuPy's stream
        for (mu, sign), face in sends.items():
            lower, upper = self.neighbours[mu]
            send_to, recv_from = (lower, upper) if sign > 0 else (upper, lower)
            recv = receive.get((mu, sign)) if receive is not None and mpi_writes else None
            if recv is None:
                recv = (xp if device_buffers else np).empty_like(face)
            tag = 2 * mu + (sign > 0)
            reqs = [self.comm.Irecv(recv, source=recv_from, tag=tag),
                    self.comm.Isend(face, dest=send_to, tag=tag)]
            pending[(mu, sign)] = (reqs, recv, face)
        return pending

    def _finish(self, pending, key):
        """Wait for the face of direction ``key`` and return it as a backend array."""
        item = pending[key]
        if not isinstance(item, tuple):
            return item
        reqs, recv, _ = item
        MPI.Request.Waitall(reqs)
        return self.xp.asarray(recv)

    def exchange_faces(self, field, buffers):
        """Fill ``buffers`` ({(mu, sign): a C-contiguous backend array of the face's size})
        with the faces of ``field`` beyond the block in direction sign e_mu (those of
        :meth:`_start_exchange`), received in place where MPI can write there: kernels that
        keep their halo buffers allocate nothing per exchange (a fresh halo array per
        update cost phi^4's compiled momentum update 15 % on 2 ranks of 512^2)."""
        pending = self._start_exchange(field, list(buffers), buffers)
        for key, buffer in buffers.items():
            face = self._finish(pending, key)
            if face is not buffer:
                buffer[...] = face.reshape(buffer.shape)

    def _shift_slices(self, mu, sign):
        """Index tuples for out(x) = field(x + sign e_mu): (interior of out, its source in
        field, the boundary slice of out that the neighbour's face fills)."""
        n = self.local_shape[mu]
        dst = [slice(None)] * self.ndim
        src = [slice(None)] * self.ndim
        edge = [slice(None)] * self.ndim
        if sign > 0:
            dst[mu], src[mu], edge[mu] = slice(0, n - 1), slice(1, n), slice(n - 1, n)
        else:
            dst[mu], src[mu], edge[mu] = slice(1, n), slice(0, n - 1), slice(0, 1)
        return tuple(dst), tuple(src), tuple(edge)

    def shift(self, field, mu, sign=+1):
        """The field at the neighbour: out(x) = field(x + sign e_mu), periodic.

        One nonblocking face exchange when direction mu is split over ranks.
        """
        pending = self._start_exchange(field, [(mu, sign)])
        out = self.xp.empty_like(field)
        dst, src, edge = self._shift_slices(mu, sign)
        out[dst] = field[src]
        out[edge] = self._finish(pending, (mu, sign))
        return out

    def padded(self, field):
        """The local ``field`` with one layer of neighbour sites around it, corners included:
        out[x + 1] = field(x) for every local x_mu from -1 to l_mu (periodic, across ranks),
        the site axes kept.

        Direction by direction: the faces exchanged in direction mu span the layers of the
        directions before it, so the corners come with them (two exchanges per split
        direction, none for the others).
        """
        nd = self.ndim
        out = self.xp.empty(tuple(n + 2 for n in self.local_shape) + field.shape[nd:],
                            dtype=field.dtype)
        out[(slice(1, -1),) * nd] = field
        for mu in range(nd):
            span = [slice(None) if nu < mu else slice(1, -1) for nu in range(nd)]
            pending = self._start_exchange(out[tuple(span)], [(mu, +1), (mu, -1)])
            for sign, index in ((+1, -1), (-1, 0)):
                span[mu] = index
                out[tuple(span)] = self._finish(pending, (mu, sign)).squeeze(axis=mu)
        return out

    def padded_strides(self):
        """The strides, in sites, of the site axes of :meth:`padded`'s arrays (C order: the
        last axis's is 1); the first times the extent l_0 + 2 is their number of sites."""
        padded = [n + 2 for n in self.local_shape]
        return np.cumprod([1] + padded[:0:-1])[::-1].astype(np.int64)

    def slabs(self, site_bytes):
        """The local time slices in slabs: slices of axis 0 of about SLAB_BYTES of a field each.

        A slab is a block of consecutive time slices x_0; all but the last hold
        max(1, SLAB_BYTES // (site_bytes * l_1 ... l_{D-1})) of them, for a field of
        ``site_bytes`` bytes per site. Kernels that make several NumPy passes over a field make
        them slab by slab, so that a slab of each array stays in the L2 cache from one pass to
        the next instead of being fetched again from L3 or memory (see :meth:`neighbour_sum`).
        On GPUs the whole field is one slab: there every pass is one kernel over the field and
        smaller kernels would only add launch overhead.
        """
        n = self.local_shape[0]
        if self.backend.on_gpu:
            rows = n
        else:
            rows = max(1, SLAB_BYTES // (site_bytes * (self.local_volume // n)))
        return [slice(a, min(a + rows, n)) for a in range(0, n, rows)]

    def empty_slab(self, dtype, site_shape=()):
        """A flat uninitialised array the size of the largest slab (the first) of a field."""
        site_size = math.prod(site_shape)
        rows = self.slabs(np.dtype(dtype).itemsize * site_size)[0]
        return self.xp.empty(rows.stop * (self.local_volume // self.local_shape[0]) * site_size,
                             dtype=dtype)

    def neighbour_sum(self, field, out=None, on_slab=None):
        """out(x) = sum_mu [field(x + e_mu) + field(x - e_mu)], periodic.

        Parameters
        ----------
        field : array of the local shape
        out : array of the local shape, optional
            Receives the result (not ``field``); allocated if omitted.
        on_slab : callable, optional
            Called as ``on_slab(rows)`` once ``out[rows]`` is final, for every slab ``rows``
            of :meth:`slabs` (in no particular order), so that the caller can go on with that
            slab while it is still in cache (see ``Phi4.force``). It may overwrite
            ``out[rows]``, which is not read again, but must leave ``field`` unchanged.

        Returns
        -------
        out

        Notes
        -----
        Every site adds (f(x+e_0) + f(x-e_0)) + (f(x+e_1) + f(x-e_1)) + ... in this order on
        every process grid, and each pair the same two numbers, so the result is bitwise
        independent of the decomposition.

        Cache blocking: the sum is made slab by slab (:meth:`slabs`, about SLAB_BYTES of a
        field each). Within a slab, direction 0 is one add into ``out``; each direction
        mu >= 1 is formed in a scratch slab by :meth:`_pair_sum` and added to ``out``. The
        slab of ``field``, ``out`` and the scratch stay in L2 across these 2D - 1 passes (and
        ``on_slab``), so L3 and memory see each array about once per call instead of once per
        pass: on a 32^4 lattice this is 2.7 times faster than whole-field passes.

        Communication: all face exchanges are posted first. Every slab needs its piece of the
        faces of split directions mu >= 1, so these are awaited at once; the faces of
        direction 0 are needed only by the slabs holding x_0 = 0 and x_0 = l_0 - 1, which are
        summed last, so that those faces travel while the inner slabs are summed.
        """
        if out is field:
            raise ValueError("neighbour_sum cannot write into its input")
        field = self.xp.ascontiguousarray(field)  # slabs are flattened into views
        out = self.xp.empty_like(field) if out is None else out
        time = [(0, +1), (0, -1)]
        space = [(mu, s) for mu in range(1, self.ndim) for s in (+1, -1)]
        pending = self._start_exchange(field, time + space)
        faces = {key: self._finish(pending, key) for key in space}
        site_shape = self.site_shape(field)
        slabs = self.slabs(field.itemsize * math.prod(site_shape))
        inner, edges = slabs[1:-1], slabs[:1] + slabs[1:][-1:]
        for rows in inner:
            self._slab_sum(field, rows, faces, out, on_slab)
        faces.update({key: self._finish(pending, key) for key in time})
        for rows in edges:
            self._slab_sum(field, rows, faces, out, on_slab)
        return out

    def _slab_sum(self, field, rows, faces, out, on_slab):
        """out[rows] = the neighbour sum on the time slices ``rows``, then ``on_slab(rows)``.

        ``faces[(mu, sign)]`` is f(x + sign e_mu) on the boundary plane of direction mu (the
        periodic wrap or the received face, see :meth:`_start_exchange`); those of direction 0
        are needed only when ``rows`` holds x_0 = 0 or l_0 - 1.
        """
        xp, n = self.xp, self.local_shape[0]
        # direction 0: one add for the slices with both neighbours in field, faces at the ends
        a, b = max(rows.start, 1), min(rows.stop, n - 1)
        if a < b:
            xp.add(field[a + 1:b + 1], field[a - 1:b - 1], out=out[a:b])
        if n == 1:
            xp.add(faces[(0, +1)], faces[(0, -1)], out=out)
        else:
            if rows.start == 0:
                xp.add(field[1:2], faces[(0, -1)], out=out[0:1])
            if rows.stop == n:
                xp.add(faces[(0, +1)], field[n - 2:n - 1], out=out[n - 1:n])
        # directions mu >= 1: each pair formed in a scratch slab, then added
        key = (field.dtype, field.shape[self.ndim:])
        if key not in self._pair_scratch:
            self._pair_scratch[key] = self.empty_slab(*key)
        slab, sum_slab = field[rows], out[rows]
        pair = self._pair_scratch[key][:slab.size].reshape(slab.shape)
        for mu in range(1, self.ndim):
            self._pair_sum(slab, mu, faces[(mu, +1)][rows], faces[(mu, -1)][rows], pair)
            sum_slab += pair
        if on_slab is not None:
            on_slab(rows)

    def _pair_sum(self, slab, mu, up, down, out):
        """out = slab(x + e_mu) + slab(x - e_mu) for a direction mu >= 1 of a slab.

        The interior is one contiguous add over the flattened slab, out_i = f_{i+s} + f_{i-s}
        with s the stride of direction mu: a single streaming pass, much faster than the
        equivalent strided slices. It is right except on the hyperplanes x_mu = 0 and
        x_mu = l_mu - 1, where i - s or i + s is a site of another line (or outside the slab);
        these two planes are then overwritten from the neighbouring plane and the face ``down``
        (f(x - e_mu) on x_mu = 0) or ``up`` (f(x + e_mu) on x_mu = l_mu - 1), the periodic
        wrap or the neighbour rank's plane. Each pair is added as f(x + e_mu) + f(x - e_mu).
        """
        n, flat, out_flat = slab.shape[mu], slab.reshape(-1), out.reshape(-1)
        if n == 1:
            self.xp.add(up, down, out=out)
            return
        m, s = flat.size, math.prod(slab.shape[mu + 1:])
        self.xp.add(flat[2 * s:], flat[:m - 2 * s], out=out_flat[s:m - s])
        self.xp.add(self._face(slab, mu, 1), down, out=self._face(out, mu, 0))
        self.xp.add(up, self._face(slab, mu, n - 2), out=self._face(out, mu, n - 1))
