"""SU(3) configurations in ILDG and openQCD files: the layouts against parsers written here
from the formats' descriptions (struct and numpy), the SciDAC checksum against zlib, round
trips on every process grid, and damaged or mismatched files refused with one line."""

import struct
import zlib

import numpy as np
import pytest
from mpi4py import MPI

from su_n_fields import haar_links
from lqcdflow.io import blocks, gauge_files, ildg
from lqcdflow.parallel import Lattice
from lqcdflow.parallel.grid import valid_grids
from lqcdflow.theories.sun import SUN

SHAPE = (4, 6, 2, 4)  # t, x, y, z


def lime_records(path):
    """{type: (payload offset, length)} of a LIME file, parsed with struct alone."""
    out, data = {}, open(path, "rb").read()
    offset = 0
    while offset < len(data):
        magic, version, flags, length, kind = struct.unpack(">iHHQ128s", data[offset:offset + 144])
        assert magic == 0x456789AB and version == 1
        out[kind.rstrip(b"\0").decode()] = (offset + 144, length, flags)
        offset += 144 + length + (-length) % 8
    assert offset == len(data)
    return out


def test_runs_of_a_box_are_the_offsets_of_its_sites():
    rng = np.random.default_rng(1)
    for _ in range(50):
        shape = tuple(rng.integers(1, 5, size=4))
        local = tuple(int(rng.integers(1, n + 1)) for n in shape)
        start = tuple(int(rng.integers(0, n - l + 1)) for n, l in zip(shape, local))
        offsets, run_bytes = blocks.runs(shape, local, start, 3)
        index = np.arange(np.prod(shape)).reshape(shape)
        box = index[tuple(slice(s, s + l) for s, l in zip(start, local))].ravel()
        expanded = (offsets[:, None] // 3 + np.arange(run_bytes // 3)).ravel()
        assert np.array_equal(expanded, box), (shape, local, start)


def test_crc32_of_rows_is_zlibs():
    data = np.random.default_rng(2).integers(0, 256, size=(40, 576), dtype=np.uint8)
    assert list(ildg.crc32_rows(data)) == [zlib.crc32(row.tobytes()) for row in data]


def test_ildg_layout_checksum_and_metadata(tmp_path):
    links = haar_links(SHAPE, 3, 3)
    lattice = Lattice(SHAPE, comm=MPI.COMM_SELF)
    path = tmp_path / "u.lime"
    ildg.write(str(path), lattice, links)
    records = lime_records(path)
    assert list(records) == ["scidac-private-file-xml", "scidac-file-xml",
                             "scidac-private-record-xml", "scidac-record-xml", "ildg-format",
                             "ildg-binary-data", "scidac-checksum", "ildg-data-lfn"]
    begins = [k for k, (_, _, flags) in records.items() if flags & 1 << 15]
    assert begins == ["scidac-private-file-xml", "scidac-private-record-xml", "ildg-data-lfn"]
    raw = open(path, "rb").read()
    fmt = raw[records["ildg-format"][0]:][:records["ildg-format"][1]].decode()
    for tag, value in (("field", "su3gauge"), ("precision", "64"), ("lx", "6"), ("ly", "2"),
                       ("lz", "4"), ("lt", "4")):
        assert f"<{tag}>{value}</{tag}>" in fmt
    start, length, _ = records["ildg-binary-data"]
    stored = np.frombuffer(raw[start:start + length], dtype=">c16").reshape(4, 4, 2, 6, 4, 3, 3)
    # sites t, z, y, x; directions x, y, z, t = lqcdflow's 1, 2, 3, 0
    for t, x, y, z in [(0, 0, 0, 0), (3, 5, 1, 2), (1, 2, 0, 3)]:
        for ildg_mu, mu in enumerate((1, 2, 3, 0)):
            assert np.array_equal(stored[t, z, y, x, ildg_mu], links[t, x, y, z, mu])
    suma = sumb = 0
    for r, site in enumerate(stored.reshape(-1, 36)):  # 36 complex numbers per site
        c = zlib.crc32(site.tobytes())
        suma ^= ((c << r % 29) | (c >> (32 - r % 29))) & 0xFFFFFFFF
        sumb ^= ((c << r % 31) | (c >> (32 - r % 31))) & 0xFFFFFFFF
    checksum = raw[records["scidac-checksum"][0]:][:records["scidac-checksum"][1]].decode()
    assert f"<suma>{suma:x}</suma>" in checksum and f"<sumb>{sumb:x}</sumb>" in checksum


def test_openqcd_layout(tmp_path):
    links = haar_links(SHAPE, 3, 4)
    theory = SUN(Lattice(SHAPE, comm=MPI.COMM_SELF), 3, 1.0)
    path = tmp_path / "u.oqcd"
    gauge_files.write(str(path), "openqcd", theory, links)
    raw = open(path, "rb").read()
    assert len(raw) == 24 + 576 * np.prod(SHAPE)
    *dims, plaquette = struct.unpack("<iiiid", raw[:24])
    assert tuple(dims) == SHAPE
    assert plaquette == pytest.approx(3 * theory.measure(links)["plaquette"], rel=1e-14)
    odd = np.frombuffer(raw[24:], dtype="<c16").reshape(-1, 8, 3, 3)
    sites = [x for x in np.ndindex(*SHAPE) if sum(x) % 2]  # lexicographic, x3 fastest
    assert len(sites) == len(odd)
    for k in (0, 7, len(sites) - 1):
        x = sites[k]
        for mu in range(4):
            behind = tuple((c - (d == mu)) % n for d, (c, n) in enumerate(zip(x, SHAPE)))
            assert np.array_equal(odd[k, 2 * mu], links[x + (mu,)])
            assert np.array_equal(odd[k, 2 * mu + 1], links[behind + (mu,)])


@pytest.mark.mpi
@pytest.mark.parametrize("fmt", ["ildg", "openqcd"])
def test_round_trips_on_every_grid(fmt, comm, shared_tmp_path):
    links = comm.bcast(haar_links(SHAPE, 3, 5))
    path = str(shared_tmp_path / f"u.{fmt}")
    grids = valid_grids(SHAPE, comm.Get_size())
    writers = [g for g in grids if fmt == "ildg" or g[3] == 1]
    for write_grid in (writers[0], writers[-1]):  # every reader grid reads each
        writer = SUN(Lattice(SHAPE, comm=comm, grid=write_grid), 3, 1.0)
        gauge_files.write(path, fmt, writer, writer.lattice.scatter(links))
        for read_grid in grids:
            reader = SUN(Lattice(SHAPE, comm=comm, grid=read_grid), 3, 1.0)
            field, what = gauge_files.read(path, reader)
            assert field.tobytes() == reader.lattice.scatter(links).tobytes(), (write_grid,
                                                                                 read_grid)
            assert "verified" in what


def test_single_precision_ildg(tmp_path):
    links = haar_links(SHAPE, 3, 6).astype(np.complex64)
    theory = SUN(Lattice(SHAPE, comm=MPI.COMM_SELF), 3, 1.0)
    path = str(tmp_path / "u.lime")
    gauge_files.write(path, "ildg", theory, links)
    assert "<precision>32</precision>" in open(path, "rb").read(4000).decode(errors="replace")
    field, _ = gauge_files.read(path, theory)
    assert field.dtype == np.complex128 and np.array_equal(field, links.astype(np.complex128))


def damaged(path, tmp_path, at=None, size=None):
    """A copy of ``path`` with one byte changed at ``at`` (from the end if negative), or cut
    to ``size`` bytes."""
    data = bytearray(open(path, "rb").read())
    if at is not None:
        data[at] ^= 0x10
    if size is not None:
        data = data[:size]
    copy = tmp_path / f"damaged_{at}_{size}"
    copy.write_bytes(bytes(data))
    return str(copy)


def test_damaged_and_mismatched_files_are_refused(tmp_path):
    links = haar_links(SHAPE, 3, 7)
    theory = SUN(Lattice(SHAPE, comm=MPI.COMM_SELF), 3, 1.0)
    lime, oqcd = str(tmp_path / "u.lime"), str(tmp_path / "u.oqcd")
    gauge_files.write(lime, "ildg", theory, links)
    gauge_files.write(oqcd, "openqcd", theory, links)
    binary = lime_records(lime)["ildg-binary-data"][0]
    cases = [
        (damaged(lime, tmp_path, at=binary + 1000), "SciDAC checksum mismatch"),
        (damaged(lime, tmp_path, size=binary + 100), "truncated"),
        (damaged(oqcd, tmp_path, at=-5), "is not the header's"),
        (damaged(oqcd, tmp_path, size=1000), "(truncated)"),
        (damaged(oqcd, tmp_path, size=10), "truncated (10 bytes"),
    ]
    for path, message in cases:
        with pytest.raises(gauge_files.GaugeFileError, match=message.replace("(", r"\(")
                           .replace(")", r"\)")):
            gauge_files.read(path, theory)
    other = SUN(Lattice((4, 6, 2, 2), comm=MPI.COMM_SELF), 3, 1.0)
    for path in (lime, oqcd):
        with pytest.raises(gauge_files.GaugeFileError, match="the run's is 4x6x2x2"):
            gauge_files.read(path, other)
    u1_like = SUN(Lattice((4, 4), comm=MPI.COMM_SELF), 3, 1.0)
    with pytest.raises(gauge_files.GaugeFileError, match="hold SU\\(3\\) links in 4D"):
        gauge_files.read(lime, u1_like)
    with pytest.raises(gauge_files.GaugeFileError, match="unreadable"):
        gauge_files.read(str(tmp_path / "missing"), theory)
