"""ILDG gauge configurations: LIME records, the ILDG binary layout and the SciDAC checksum.

LIME (the record format of USQCD's c-lime): a file is a sequence of records, each a 144-byte
header (big-endian: magic 0x456789ab as int32, version 1 as int16, flags int16 with bit 15
"message begin" and bit 14 "message end", payload length int64, a 128-byte NUL-padded type
string) followed by the payload padded with zeros to a multiple of 8 bytes.

An ILDG configuration (ILDG binary format 1.1, as written by QIO, Chroma, Grid, openQCD's
converters) is written here as three messages,

    1. scidac-private-file-xml, scidac-file-xml
    2. scidac-private-record-xml, scidac-record-xml, ildg-format, ildg-binary-data,
       scidac-checksum
    3. ildg-data-lfn

``ildg-format`` is XML (field su3gauge, precision 32 or 64, lx ly lz lt); ``ildg-binary-data``
holds the links big-endian, sites t, z, y, x from slowest to fastest, per site the directions
x, y, z, t, each a 3 x 3 complex matrix in row-major order. lqcdflow's lattice axes are
(t, x, y, z) = (0, 1, 2, 3), openQCD's convention, so the ILDG array is lqcdflow's with the
spatial axes reversed and the directions in the order (1, 2, 3, 0).

SciDAC checksum (QIO's DML_checksum): per site c = crc32 of its bytes as stored, r its index
in the file's order (x fastest, counted in 64 bits), suma ^= rotl32(c, r mod 29),
sumb ^= rotl32(c, r mod 31); written as hexadecimal in the scidac-checksum record. Reading
verifies it when the record is there (files of some codes have none: said in the log).

Reading and writing are collective and parallel: each rank reads and writes its own sites
(lqcdflow.io.blocks), rank 0 the headers and metadata; a file is written under a temporary
name and renamed when complete.
"""

import os
import re
import struct
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from lqcdflow.io import blocks

MAGIC = 0x456789AB
HEADER = struct.Struct(">iHHQ128s")  # magic, version, flags, payload bytes, type
MESSAGE_BEGIN, MESSAGE_END = 1 << 15, 1 << 14
DIRECTIONS = [1, 2, 3, 0]  # ILDG's x, y, z, t in lqcdflow's directions


class ILDGError(ValueError):
    """A file that is not a readable ILDG configuration of the expected lattice."""


@dataclass(frozen=True)
class Record:
    """A LIME record: its type, payload offset and length in the file, flags."""

    type: str
    offset: int
    length: int
    flags: int


def _padded(n):
    return n + (-n) % 8


def records(path):
    """The LIME records of the file ``path`` (headers only); ILDGError if it is not LIME or is
    cut short."""
    size = os.path.getsize(path)
    found = []
    with open(path, "rb") as f:
        offset = 0
        while offset < size:
            header = f.read(HEADER.size)
            if len(header) < HEADER.size:
                raise ILDGError(f"{path}: truncated (a LIME record header ends at byte {size})")
            magic, _, flags, length, kind = HEADER.unpack(header)
            if magic != MAGIC:
                raise ILDGError(f"{path}: not a LIME file (no LIME magic number at byte "
                                f"{offset})")
            start = offset + HEADER.size
            if start + length > size:
                raise ILDGError(f"{path}: truncated (record "
                                f"{kind.rstrip(bytes(1)).decode(errors='replace')} needs "
                                f"{start + length} bytes, the file has {size})")
            found.append(Record(kind.rstrip(bytes(1)).decode(errors="replace"), start, length,
                                flags))
            offset = start + _padded(length)
            f.seek(offset)
    return found


def is_lime(path):
    """True if ``path`` begins with the LIME magic number."""
    with open(path, "rb") as f:
        head = f.read(4)
    return len(head) == 4 and struct.unpack(">i", head)[0] == MAGIC


def _crc32_table():
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table[i] = c
    return table


CRC32_TABLE = _crc32_table()


def crc32_rows(data):
    """The CRC-32 (zlib's) of every row of the uint8 array ``data`` (sites, bytes), at once."""
    crc = np.full(data.shape[0], 0xFFFFFFFF, dtype=np.uint32)
    for k in range(data.shape[1]):
        crc = CRC32_TABLE[(crc ^ data[:, k]) & 0xFF] ^ (crc >> np.uint32(8))
    return crc ^ np.uint32(0xFFFFFFFF)


def scidac_checksum(site_bytes, ranks, comm):
    """(suma, sumb) over all ranks of ``comm`` for the sites ``site_bytes`` (uint8, sites x
    bytes as stored) at file indices ``ranks`` (module docstring)."""
    c = crc32_rows(site_bytes).astype(np.uint64)
    sums = []
    for modulus in (29, 31):
        shift = (ranks % modulus).astype(np.uint64)
        rotated = ((c << shift) | (c >> (np.uint64(32) - shift))) & np.uint64(0xFFFFFFFF)
        sums.append(int(np.bitwise_xor.reduce(rotated)) if rotated.size else 0)
    return tuple(comm.allreduce(s, op=MPI.BXOR) for s in sums)


def _file_order(lattice):
    """(global shape, start, local shape) of this rank's box in ILDG's order (t, z, y, x)."""
    order = [0, 3, 2, 1]
    return ([lattice.shape[a] for a in order], [lattice.offset[a] for a in order],
            [lattice.local_shape[a] for a in order])


def _file_indices(lattice):
    """The ILDG index (x fastest) of every site of this rank's box, in the box's file order."""
    shape, start, local = _file_order(lattice)
    index = np.zeros((), dtype=np.int64)
    for extent, first, length in zip(shape, start, local):
        index = index[..., None] * extent + (first + np.arange(length, dtype=np.int64))
    return index.ravel()


def _to_file(lattice, links, precision):
    """This rank's links in ILDG's layout: (t, z, y, x, direction x y z t, 3, 3), big-endian."""
    local = lattice.backend.asnumpy(links).transpose(0, 3, 2, 1, 4, 5, 6)[:, :, :, :, DIRECTIONS]
    return np.ascontiguousarray(local, dtype=f">c{precision // 4}")


def _format_xml(lattice, precision):
    lt, lx, ly, lz = lattice.shape
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<ildgFormat xmlns="http://www.lqcd.org/ildg" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation='
            '"http://www.lqcd.org/ildg http://www.lqcd.org/ildg/filefmt.xsd">\n'
            f"<version>1.0</version>\n<field>su3gauge</field>\n<precision>{precision}"
            f"</precision>\n<lx>{lx}</lx>\n<ly>{ly}</ly>\n<lz>{lz}</lz>\n<lt>{lt}</lt>\n"
            "</ildgFormat>\n")


def write(path, lattice, links, precision=64, lfn="", metadata=""):
    """Write the SU(3) ``links`` (this rank's block, site shape (4, 3, 3), lqcdflow's axes) as
    an ILDG file (collective; ``path`` appears only when complete).

    ``precision`` 64 or 32 (bits per real number); ``lfn``: the logical file name of the
    ildg-data-lfn record (default: the file's name); ``metadata``: text for scidac-file-xml.
    """
    data = _to_file(lattice, links, precision)
    site_bytes = data.dtype.itemsize * 36
    suma, sumb = scidac_checksum(data.view(np.uint8).reshape(-1, site_bytes),
                                 _file_indices(lattice), lattice.comm)
    lt, lx, ly, lz = lattice.shape
    dims = f"{lx} {ly} {lz} {lt}"
    volume = lattice.volume
    small = [
        ("scidac-private-file-xml",
         f'<?xml version="1.0" encoding="UTF-8"?><scidacFile><version>1.1</version>'
         f"<spacetime>4</spacetime><dims>{dims} </dims><volfmt>0</volfmt></scidacFile>"),
        ("scidac-file-xml", metadata or "<info>lqcdflow</info>"),
        ("scidac-private-record-xml",
         '<?xml version="1.0" encoding="UTF-8"?><scidacRecord><version>1.1</version>'
         f"<date>{_date()}</date><recordtype>0</recordtype><datatype>QDP_F3_ColorMatrix"
         f"</datatype><precision>{'D' if precision == 64 else 'F'}</precision><colors>3"
         f"</colors><spins>4</spins><typesize>{site_bytes // 4}</typesize><datacount>4"
         "</datacount></scidacRecord>"),
        ("scidac-record-xml", "<info>lqcdflow SU(3) gauge configuration</info>"),
        ("ildg-format", _format_xml(lattice, precision)),
    ]
    checksum = ('<?xml version="1.0" encoding="UTF-8"?><scidacChecksum><version>1.0</version>'
                f"<suma>{suma:x}</suma><sumb>{sumb:x}</sumb></scidacChecksum>")
    message = [(kind, text.encode()) for kind, text in small]
    layout = [message[:2], message[2:] + [("ildg-binary-data", volume * site_bytes),
                                          ("scidac-checksum", checksum.encode())],
              [("ildg-data-lfn", (lfn or os.path.basename(path)).encode())]]
    temporary = f"{path}.tmp"
    binary_offset = None
    if lattice.rank == 0:
        with open(temporary, "wb") as f:
            for records_of_message in layout:
                for i, (kind, payload) in enumerate(records_of_message):
                    flags = (MESSAGE_BEGIN if i == 0 else 0) | \
                        (MESSAGE_END if i == len(records_of_message) - 1 else 0)
                    length = payload if isinstance(payload, int) else len(payload)
                    f.write(HEADER.pack(MAGIC, 1, flags, length, kind.encode()))
                    if isinstance(payload, int):
                        binary_offset = f.tell()
                        f.seek(_padded(length), os.SEEK_CUR)
                    else:
                        f.write(payload + bytes(_padded(length) - length))
            f.truncate(f.tell())
    binary_offset = lattice.comm.bcast(binary_offset, root=0)
    shape, start, _ = _file_order(lattice)
    blocks.write_block(lattice.comm, temporary, binary_offset, shape, start, data)
    lattice.comm.Barrier()
    if lattice.rank == 0:
        os.replace(temporary, path)
    lattice.comm.Barrier()


def _date():
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).strftime("%a %b %d %H:%M:%S %Y UTC")


def _xml_value(text, tag):
    match = re.search(rf"<{tag}>\s*([^<]*?)\s*</{tag}>", text)
    return match.group(1) if match else None


def header(path):
    """{"shape": (lt, lx, ly, lz) in lqcdflow's axes, "precision", "binary": Record,
    "checksum": (suma, sumb) or None} of an ILDG file; ILDGError for anything else."""
    found = {r.type: r for r in records(path)}
    if "ildg-format" not in found or "ildg-binary-data" not in found:
        raise ILDGError(f"{path}: a LIME file without ildg-format and ildg-binary-data "
                        "records is not an ILDG configuration")
    with open(path, "rb") as f:
        def text(record):
            f.seek(record.offset)
            return f.read(min(record.length, 1 << 16)).decode(errors="replace")

        fmt = text(found["ildg-format"])
        checksum = text(found["scidac-checksum"]) if "scidac-checksum" in found else None
    if _xml_value(fmt, "field") != "su3gauge":
        raise ILDGError(f"{path}: ILDG field {_xml_value(fmt, 'field')!r} is not su3gauge")
    try:
        precision = int(_xml_value(fmt, "precision"))
        lx, ly, lz, lt = (int(_xml_value(fmt, t)) for t in ("lx", "ly", "lz", "lt"))
    except (TypeError, ValueError):
        raise ILDGError(f"{path}: unreadable ildg-format record") from None
    if precision not in (32, 64):
        raise ILDGError(f"{path}: ILDG precision {precision} is neither 32 nor 64")
    binary = found["ildg-binary-data"]
    expected = lx * ly * lz * lt * 4 * 9 * 2 * precision // 8
    if binary.length != expected:
        raise ILDGError(f"{path}: ildg-binary-data holds {binary.length} bytes, a "
                        f"{lx}x{ly}x{lz}x{lt} SU(3) field in {precision} bits needs {expected}")
    sums = None
    if checksum is not None:
        try:
            sums = (int(_xml_value(checksum, "suma"), 16), int(_xml_value(checksum, "sumb"), 16))
        except (TypeError, ValueError):
            raise ILDGError(f"{path}: unreadable scidac-checksum record") from None
    return {"shape": (lt, lx, ly, lz), "precision": precision, "binary": binary,
            "checksum": sums}


def read(path, lattice, dtype):
    """(this rank's links, site shape (4, 3, 3) of ``dtype``, lqcdflow's axes; whether a SciDAC
    checksum was verified) of the ILDG file ``path`` (collective). ILDGError (on every rank)
    for a file that is not one on this lattice or whose checksum does not hold."""
    def checked_header():
        info = header(path)
        if info["shape"] != lattice.shape:
            raise ILDGError(f"{path}: an ILDG configuration of a "
                            f"{'x'.join(map(str, info['shape']))} lattice (t x y z), the "
                            f"run's is {'x'.join(map(str, lattice.shape))}")
        return info

    info = blocks.on_root(lattice.comm, checked_header, ILDGError, path)
    precision = info["precision"]
    shape, start, local = _file_order(lattice)
    site = np.dtype((f">c{precision // 4}", (4, 3, 3)))
    data = blocks.read_block(lattice.comm, path, info["binary"].offset, shape, start, local, site)
    if info["checksum"] is not None:
        sums = scidac_checksum(data.view(np.uint8).reshape(-1, site.itemsize),
                               _file_indices(lattice), lattice.comm)
        if sums != info["checksum"]:
            raise ILDGError(f"{path}: SciDAC checksum mismatch (suma, sumb = "
                            f"{sums[0]:x}, {sums[1]:x}; the file says {info['checksum'][0]:x}, "
                            f"{info['checksum'][1]:x}): data corrupt")
    links = np.empty(lattice.local_shape + (4, 3, 3), dtype=dtype)
    links[..., DIRECTIONS, :, :] = data.transpose(0, 3, 2, 1, 4, 5, 6)
    return lattice.xp.asarray(links), info["checksum"] is not None
