"""One configuration in any of the formats lqcdflow reads and writes: its own configurations
files (HDF5, any field), ILDG and openQCD (SU(3) links in 4D).

The format of a file to read is recognised from its first bytes: HDF5's signature, LIME's magic
number (ILDG), anything else is tried as openQCD (whose header has no signature; its size must
match its extents). Reading and writing are collective over the lattice's ranks.
"""

import numpy as np

from lqcdflow.io import ildg, openqcd
from lqcdflow.io.configurations import ConfigurationReader, ConfigurationWriter
from lqcdflow.io.ensemble import OutputError
from lqcdflow.io.files import READ_ERRORS, reason

FORMATS = ("lqcdflow", "ildg", "openqcd")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
SU3_LINKS = (4, 3, 3)  # the site shape ILDG and openQCD files hold


class GaugeFileError(OutputError):
    """A configuration file that cannot be read or written as asked (one line)."""


def detect(path):
    """The format of the existing file ``path`` ("lqcdflow", "ildg" or "openqcd")."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise GaugeFileError(f"configuration {path}: unreadable ({reason(e)})") from None
    if head == HDF5_SIGNATURE:
        return "lqcdflow"
    if ildg.is_lime(path):
        return "ildg"
    return "openqcd"


def _su3_only(spec, fmt, path):
    if tuple(spec.site_shape) != SU3_LINKS or not spec.complex:
        raise GaugeFileError(f"{path}: {fmt} files hold SU(3) links in 4D; this run's field "
                             f"{spec.name} has site shape {list(spec.site_shape)}")


def shape_of(path):
    """(format, lattice shape) of a configuration file, read serially."""
    import h5py

    fmt = detect(path)
    try:
        if fmt == "ildg":
            return fmt, ildg.header(path)["shape"]
        if fmt == "openqcd":
            return fmt, openqcd.header(path)[0]
        with h5py.File(path, "r") as f:
            name = f.attrs.get("field", "")
            if f"configurations/{name}" not in f:
                raise GaugeFileError(f"{path}: not an lqcdflow configuration file")
            return fmt, tuple(int(n) for n in f.attrs["lattice.shape"])
    except (ildg.ILDGError, openqcd.OpenQCDError) as e:
        raise GaugeFileError(str(e)) from None
    except GaugeFileError:
        raise
    except READ_ERRORS as e:
        raise GaugeFileError(f"{path}: unreadable ({reason(e)})") from None


def read(path, theory, index=-1):
    """(this rank's field, a line saying what was read) of configuration ``index`` of an
    lqcdflow configurations file (default: the last), or of an ILDG or openQCD file, for
    ``theory``'s field on its lattice (collective). openQCD's stored plaquette is checked
    against the links' (to 1e-10, relative)."""
    lattice, spec = theory.lattice, theory.field
    fmt = lattice.comm.bcast(detect(path) if lattice.rank == 0 else None, root=0)
    dtype = spec.dtype(lattice.backend.dtype)
    if fmt == "lqcdflow":
        with ConfigurationReader(path, theory) as reader:
            if not -reader.count <= index < reader.count:
                raise GaugeFileError(f"{path} holds {reader.count} configurations, there is "
                                     f"no number {index}")
            field, trajectory = reader.read(index % reader.count)
        return field.astype(dtype, copy=False), \
            f"configuration {index % reader.count} (trajectory {trajectory}) of {path}"
    _su3_only(spec, fmt, path)
    try:
        if fmt == "ildg":
            field, checked = ildg.read(path, lattice, dtype)
            return field, f"ILDG configuration {path} (SciDAC checksum " + \
                ("verified)" if checked else "absent: not verified)")
        field, stored = openqcd.read(path, lattice, dtype)
    except (ildg.ILDGError, openqcd.OpenQCDError) as e:
        raise GaugeFileError(str(e)) from None
    computed = theory.mean_re_trace(field)
    if not abs(computed - stored) <= 1e-10 * abs(stored):
        raise GaugeFileError(f"{path}: the links' plaquette {computed:.16g} is not the "
                             f"header's {stored:.16g} (data corrupt, or not an openQCD "
                             "configuration)")
    return field, f"openQCD configuration {path} (plaquette {stored:.12g} verified)"


def write(path, fmt, theory, field, attrs=None, trajectory=0):
    """Write ``field`` (this rank's block) to ``path`` in format ``fmt`` (collective).

    lqcdflow: a configurations file with this one configuration and the attributes
    ``attrs``; ILDG and openQCD: SU(3) links in 4D (openQCD needs a process grid with one rank
    along direction 3).
    """
    lattice, spec = theory.lattice, theory.field
    if fmt == "lqcdflow":
        from lqcdflow.mc.hmc import ChainState

        writer = ConfigurationWriter(path, theory, attrs or {}, every=1, overwrite=True)
        writer.save(ChainState(field, trajectory))
        return
    _su3_only(spec, fmt, path)
    try:
        if fmt == "ildg":
            ildg.write(path, lattice, field, precision=8 * np.dtype(field.dtype).itemsize // 2)
        else:
            openqcd.write(path, lattice, field, theory.mean_re_trace(field))
    except (ildg.ILDGError, openqcd.OpenQCDError) as e:
        raise GaugeFileError(str(e)) from None
