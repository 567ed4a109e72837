"""Checkpoints: parallel write/read on every grid, checksums, atomicity and corruption."""

import math
import os

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from lqcdflow.config import validate
from lqcdflow.io import checkpoint
from lqcdflow.io.checksum import field_checksum, global_checksum
from lqcdflow.io.h5 import FieldFile
from lqcdflow.mc.hmc import ChainState
from lqcdflow.parallel import Lattice
from lqcdflow.parallel.grid import valid_grids
from lqcdflow.theories.base import FieldSpec

SHAPE = (4, 6, 4)
PHI = FieldSpec("phi", ())


def config(seed=1):
    return validate({"lattice": {"shape": list(SHAPE)}, "theory": {"kappa": 0.1, "lambda": 0.5},
                     "sampler": {"n_steps": 3, "n_trajectories": 10},
                     "output": {"file": "x.h5"}, "run": {"seed": seed}})


def save(directory, lat, state, keep):
    """A checkpoint of phi^4's field ``state`` with the test's run file."""
    return checkpoint.save(directory, lat, PHI, state, config(), {}, keep)


def global_field(seed=0):
    return np.random.default_rng(seed).standard_normal(SHAPE)


@pytest.mark.mpi
def test_checksum_is_decomposition_independent_and_sensitive(comm):
    phi = global_field()
    reference = field_checksum(Lattice(SHAPE, comm=MPI.COMM_SELF), phi)
    flipped = phi.copy()
    flipped.view(np.uint64)[1, 2, 3] ^= np.uint64(1)  # one bit of one value
    swapped = phi.copy()
    swapped[0, 0, 0], swapped[0, 0, 1] = phi[0, 0, 1], phi[0, 0, 0]
    for grid in valid_grids(SHAPE, comm.Get_size()):
        lat = Lattice(SHAPE, comm=comm, grid=grid)
        assert field_checksum(lat, lat.scatter(phi)) == reference
        assert field_checksum(lat, lat.scatter(flipped)) != reference
        assert field_checksum(lat, lat.scatter(swapped)) != reference


@pytest.mark.mpi
def test_save_on_any_grid_load_on_any_other(comm, shared_tmp_path):
    phi = global_field(1)
    for grid in valid_grids(SHAPE, comm.Get_size()):
        lat = Lattice(SHAPE, comm=comm, grid=grid)
        directory = str(shared_tmp_path / f"ck{'x'.join(map(str, grid))}")
        for t in (2, 4, 6):
            path = checkpoint.save(directory, lat, PHI, ChainState(lat.scatter(phi * t), t, t - 1),
                                   config(), {"output.mc": t}, keep=2)
        assert checkpoint.list_checkpoints(directory) == [checkpoint.checkpoint_path(directory, 6),
                                                          checkpoint.checkpoint_path(directory, 4)]
        assert not [n for n in os.listdir(directory) if n.endswith(".tmp")]
        for other in valid_grids(SHAPE, comm.Get_size()) + [None]:
            reader = Lattice(SHAPE, comm=comm if other else MPI.COMM_SELF, grid=other)
            local, attrs = checkpoint.load(path, reader, PHI)
            assert np.array_equal(local, reader.scatter(phi * 6))
            assert attrs["trajectory"] == 6 and attrs["accepted"] == 5
            assert attrs["output.mc"] == 6 and attrs["ranks"] == comm.Get_size()
        with h5py.File(path, "r") as f:  # plain h5py reads the global field
            assert np.array_equal(f["fields/phi"][()], phi * 6)


def corrupt_field_byte(path):
    with h5py.File(path, "r") as f:
        offset = f["fields/phi"].id.get_offset()
    with open(path, "r+b") as f:
        f.seek(offset + 17)
        byte = f.read(1)
        f.seek(offset + 17)
        f.write(bytes([byte[0] ^ 0x10]))


def test_corruption_is_detected_and_named(tmp_path):
    lat = Lattice(SHAPE, comm=MPI.COMM_SELF)
    path = save(str(tmp_path), lat, ChainState(global_field(), 3, 1), 3)
    checkpoint.load(path, lat, PHI)
    corrupt_field_byte(path)
    with pytest.raises(checkpoint.CheckpointError, match="field checksum mismatch"):
        checkpoint.load(path, lat, PHI)

    path = save(str(tmp_path), lat, ChainState(global_field(), 4, 1), 3)
    with h5py.File(path, "r+") as f:
        f.attrs["accepted"] = 2  # a changed attribute breaks the state hash
    with pytest.raises(checkpoint.CheckpointError, match="state hash"):
        checkpoint.load(path, lat, PHI)

    path = save(str(tmp_path), lat, ChainState(global_field(), 5, 1), 3)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(checkpoint.CheckpointError, match=f"{path}: unreadable"):
        checkpoint.load(path, lat, PHI)


def test_write_failure_keeps_old_checkpoints(tmp_path):
    lat = Lattice(SHAPE, comm=MPI.COMM_SELF)
    good = save(str(tmp_path), lat, ChainState(global_field(), 1, 1), 1)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(checkpoint.CheckpointError, match="cannot create checkpoint directory"):
        save(str(blocker / "ck"), lat, ChainState(global_field(), 2, 1), 1)
    assert checkpoint.load(good, lat, PHI)[1]["trajectory"] == 1


@pytest.mark.mpi
def test_field_file_serial_fallback_equals_parallel(comm, shared_tmp_path):
    phi = global_field(2)
    for grid in valid_grids(SHAPE, comm.Get_size()):
        lat = Lattice(SHAPE, comm=comm, grid=grid)
        for parallel in (True, False):
            path = str(shared_tmp_path / f"f{parallel}{'x'.join(map(str, grid))}.h5")
            with FieldFile(path, "w", lat, parallel=parallel) as f:
                f.create_field("phi", np.float64, leading=(0,), maxleading=(None,))
                if f.root:
                    f.file["phi"].resize(2, axis=0)
                f.write_field("phi", lat.scatter(phi), index=(1,))
            with FieldFile(path, "r", lat, parallel=parallel) as f:
                assert np.array_equal(f.read_field("phi", index=(1,)), lat.scatter(phi))
            comm.Barrier()
            if comm.Get_rank() == 0:
                with h5py.File(path, "r") as f:
                    assert np.array_equal(f["phi"][1], phi)


@pytest.mark.mpi
@pytest.mark.parametrize("site_shape, dtype", [((3,), np.float64), ((2, 3, 3), np.complex128),
                                               ((3,), np.float32)])
def test_fields_of_any_site_shape_and_dtype_round_trip_on_every_grid(comm, shared_tmp_path,
                                                                      site_shape, dtype):
    """Links (D,) angles and (D, N, N) complex matrices: saved on any grid, read on any other
    (and serially), bitwise, with one decomposition-independent checksum."""
    gen = np.random.default_rng(5)
    field = gen.standard_normal(SHAPE + site_shape).astype(dtype)
    if np.iscomplexobj(field):
        field = field + 1j * gen.standard_normal(field.shape)
    spec = FieldSpec("links", site_shape, complex=np.iscomplexobj(field))
    reference = field_checksum(Lattice(SHAPE, comm=MPI.COMM_SELF), field)
    for grid in valid_grids(SHAPE, comm.Get_size()):
        lat = Lattice(SHAPE, comm=comm, grid=grid)
        local = lat.scatter(field)
        assert field_checksum(lat, local) == reference
        directory = str(shared_tmp_path / f"links{'x'.join(map(str, grid))}")
        path = checkpoint.save(directory, lat, spec, ChainState(local, 3, 2), config(), {}, 1)
        for other in valid_grids(SHAPE, comm.Get_size()) + [None]:
            reader = Lattice(SHAPE, comm=comm if other else MPI.COMM_SELF, grid=other)
            back, attrs = checkpoint.load(path, reader, spec)
            assert back.dtype == field.dtype
            assert back.tobytes() == field[reader.local_slices()].tobytes()
            assert attrs["field"] == "links"
        with pytest.raises(checkpoint.CheckpointError, match="holds no field 'phi'"):
            checkpoint.load(path, lat, PHI)
    flipped = field.copy()
    flipped.reshape(-1).view(np.uint8)[57] ^= 4  # one bit of one number
    assert field_checksum(Lattice(SHAPE, comm=MPI.COMM_SELF), flipped) != reference


def test_checksum_version_2_sees_what_version_1_missed():
    """A complex number negated (two sign bits) cancels in version 1's sum, not in version 2's;
    both see one flipped bit; the serial checksum of a global array equals the lattice's."""
    lat = Lattice(SHAPE, comm=MPI.COMM_SELF)
    field = np.full(SHAPE + (2,), 1 + 1j)
    unseen = {1: 0, 2: 0}
    for site in np.ndindex(field.shape):
        negated = field.copy()
        negated[site] *= -1
        for version in unseen:
            unseen[version] += (field_checksum(lat, negated, version)
                                == field_checksum(lat, field, version))
    assert unseen[1] > 0 and unseen[2] == 0, unseen
    gen = np.random.default_rng(6)
    field = gen.standard_normal(SHAPE + (2,)) + 1j * gen.standard_normal(SHAPE + (2,))
    for version in (1, 2):
        assert global_checksum(field, version) == field_checksum(lat, field, version)
        flipped = field.copy()
        flipped.view(np.uint64)[0, 1, 2, 3] ^= np.uint64(1 << 40)
        assert global_checksum(flipped, version) != global_checksum(field, version)


def test_configurations_of_terabyte_lattices_get_chunks_hdf5_accepts(tmp_path):
    """SU(3) links on 256^3 x 512 (4.9 TB a field, 4.8 GB a time slice): chunks below 4 GiB,
    of whole sites; small fields stay one chunk each."""
    from lqcdflow.io.h5 import CHUNK_BYTES, field_chunk

    shape = (512, 256, 256, 256, 4, 3, 3)
    chunk = field_chunk(shape, np.complex128)
    assert 16 * math.prod(chunk) <= CHUNK_BYTES and chunk[4:] == (4, 3, 3)
    assert field_chunk((8, 8, 2), np.float64) == (8, 8, 2)
    lat = Lattice((512, 256, 256, 256), comm=MPI.COMM_SELF)
    with FieldFile(str(tmp_path / "big.h5"), "w", lat) as f:  # no data: nothing is allocated
        f.create_field("configurations/U", np.complex128, (4, 3, 3), leading=(0,),
                       maxleading=(None,))
        assert f.file["configurations/U"].chunks == (1,) + chunk
