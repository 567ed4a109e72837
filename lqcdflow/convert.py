"""``lqcdflow convert``: an SU(3) gauge configuration from one format into another.

Formats: lqcdflow's configurations files (HDF5; the source's configuration ``--index``,
default the last), ILDG (LIME with SciDAC checksum) and openQCD; see
:mod:`lqcdflow.io.gauge_files`. The lattice comes from the source; the conversion runs on the
ranks of the communicator, each reading and writing its own sub-lattice, so a configuration
larger than one node's memory converts on enough nodes. Written files appear only when
complete; an existing target is replaced only with ``overwrite``.
"""

import os

import numpy as np

from lqcdflow.io import blocks, gauge_files, paths
from lqcdflow.io.gauge_files import GaugeFileError
from lqcdflow.parallel import Lattice
from lqcdflow.parallel.grid import GridError, halo_sites, valid_grids
from lqcdflow.theories.sun import SUN


def _grid(shape, ranks, whole_direction_3):
    """The smallest-halo process grid, with one rank along direction 3 if asked (openQCD)."""
    grids = [g for g in valid_grids(shape, ranks) if not whole_direction_3 or g[-1] == 1]
    if not grids:
        raise GridError(f"a {'x'.join(map(str, shape))} lattice cannot be split over {ranks} "
                        "ranks" + (" without splitting direction 3 (openQCD files)"
                                   if whole_direction_3 else ""))
    return min(grids, key=lambda g: (halo_sites(shape, g), [-n for n in g]))


def convert(source, target, to, comm, index=-1, overwrite=False, say=None):
    """Convert configuration ``index`` of ``source`` into ``target`` in format ``to``
    (collective); returns the exit code (0)."""
    def checked_source():
        found = gauge_files.shape_of(source)
        if os.path.exists(target) and not overwrite:
            raise GaugeFileError(f"{target} exists; use --overwrite to replace it")
        return found

    paths.check(comm, [(target, "target", "file")], [(source, "source")])
    fmt, shape = blocks.on_root(comm, checked_source, GaugeFileError, source)
    if len(shape) != 4:
        raise GaugeFileError(f"{source}: a {len(shape)}D lattice; SU(3) configurations for "
                             "conversion are 4D")
    lattice = Lattice(shape, comm=comm, grid=_grid(shape, comm.Get_size(), to == "openqcd"))
    theory = SUN(lattice, 3, 0.0)
    field, what = gauge_files.read(source, theory, index)
    attrs = {"theory.name": "su3", "lattice.shape": np.asarray(shape),
             "converted_from": os.path.abspath(source)}
    gauge_files.write(target, to, theory, field, attrs)
    plaquette = theory.mean_re_trace(field) / 3  # collective: on every rank
    if say:
        say(f"{what} -> {to} {target}: {'x'.join(map(str, shape))} (t x y z), plaquette "
            f"{plaquette:.15f}")
    return 0
