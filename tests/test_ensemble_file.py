"""The ensemble file (format version 3): round trip, resume, growth, reading during writing,
what a commit writes byte by byte, SIGKILL at random instants, detection of damage, and files
of version 2.

Run as a script (``python test_ensemble_file.py PATH SEED P_EARLIER GROWTH``) this module is
the writer that the kill and read-while-writing tests start: it continues the file from its
last commit (or, with probability P_EARLIER, from an earlier one, like a restart from an older
checkpoint) for a run of GROWTH times as many trajectories as the file has room for (GROWTH > 1:
it first copies the file into a larger one), and appends the records of :func:`expected` in
commits of random size forever.
"""

import os
import random
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from mpi4py import MPI
from runs import lqcdflow

from lqcdflow.analysis import AnalysisError, read
from lqcdflow.io import info
from lqcdflow.io.checksum import array_sha256
from lqcdflow.io.ensemble import (FORMAT, GROUPS, DamagedError, EnsembleWriter, OutputError,
                                  commit_log, last_commit, series_checksum)
from lqcdflow.mc.hmc import TrajectoryInfo
from lqcdflow.theories.base import Observable

OBSERVABLES = (Observable("action", (), "S"), Observable("plaquette", (), "<cos theta_P>"),
               Observable("polyakov", (2,), "P_mu", complex=True),
               Observable("correlator", (16,), "C(t)"))
MEASURE_EVERY = 2


def attributes(n_trajectories=None):
    """Metadata of a U(1)-like run (its analysis needs action and plaquette)."""
    attrs = {"format": FORMAT, "format_version": 3, "lattice.shape": np.array([16, 16]),
             "theory.name": "u1", "theory.beta": 1.0, "run.seed": 5,
             "sampler.measure_every": MEASURE_EVERY}
    if n_trajectories is not None:
        attrs["sampler.n_trajectories"] = n_trajectories
    return attrs


def measurement(t):
    return {"action": float(t), "plaquette": 1.0 / t,
            "polyakov": np.array([t + 1j, -t + 2j]), "correlator": t + np.arange(16.0)}


def expected(n):
    """{series: rows} of the first n trajectories (every MEASURE_EVERY-th measured)."""
    t = np.arange(1, n + 1)
    m = t[t % MEASURE_EVERY == 0]
    return {"mc/trajectory": t, "mc/accepted": (t % 3 != 0).astype(np.int8),
            "mc/delta_H": np.sin(t), "observables/trajectory": m,
            **{f"observables/{o.name}": np.array([measurement(int(x))[o.name] for x in m],
                                                 dtype=o.dtype).reshape((len(m),) + o.shape)
               for o in OBSERVABLES}}


def record(writer, first, last):
    """Record trajectories first..last (and their measurements)."""
    for t in range(first, last + 1):
        writer.record_trajectory(TrajectoryInfo(t, float(np.sin(t)), t % 3 != 0))
        if t % MEASURE_EVERY == 0:
            writer.record_measurement(t, measurement(t))


def lengths_of(n):
    return {"mc": n, "observables": n // MEASURE_EVERY}


def new_file(path, n=0, n_trajectories=None, commit_every=10):
    """An ensemble of the first n trajectories, committed every ``commit_every``."""
    writer = EnsembleWriter(str(path), attributes(n_trajectories), OBSERVABLES, MPI.COMM_SELF,
                            overwrite=True)
    for first in range(1, n + 1, commit_every):
        record(writer, first, min(first + commit_every - 1, n))
        writer.commit()
    return writer


def committed(path):
    """(lengths, {series: committed rows}) read with plain h5py."""
    with h5py.File(path, "r") as f:
        commit = last_commit(f)
        return commit.lengths, {name: f[name][:commit.lengths[name.split("/")[0]]]
                                for name in commit.checksums}


def assert_is_prefix(path):
    """The file verifies (``lqcdflow info``) and holds the first n trajectories for some n;
    returns n."""
    _, bad = info.inspect(str(path))
    assert bad == []
    lengths, data = committed(path)
    n = lengths["mc"]
    assert lengths == lengths_of(n)
    want = expected(n)
    for name, rows in data.items():
        np.testing.assert_array_equal(rows, want[name], err_msg=name)
    return n


# --- round trip, resume, growth ------------------------------------------------------------

def test_records_come_back_as_written(tmp_path):
    path = tmp_path / "e.h5"
    new_file(path, 40, n_trajectories=40)
    assert assert_is_prefix(path) == 40
    with h5py.File(path, "r") as f:
        # sized from n_trajectories: a finished run fills its series exactly
        assert f["mc/trajectory"].shape == (40,) and f["observables/polyakov"].shape == (20, 2)
        assert f["observables/polyakov"].dtype == np.complex128
        assert f["mc/accepted"].dtype == np.int8
        assert f["observables/correlator"].attrs["description"] == "C(t)"
        assert f.attrs["format_version"] == 3
    (r,) = read.load([str(path)]).replicas
    want = expected(40)
    np.testing.assert_array_equal(r.mc_trajectory, want["mc/trajectory"])
    np.testing.assert_array_equal(r.observables["polyakov"], want["observables/polyakov"])
    np.testing.assert_array_equal(r.mc["delta_H"], want["mc/delta_H"])


def test_the_checksum_is_additive_and_sees_any_single_change():
    rng = np.random.default_rng(3)
    for rows in (rng.standard_normal((50, 16)), rng.integers(0, 2, 50).astype(np.int8),
                 rng.standard_normal(50) + 1j * rng.standard_normal(50)):
        whole = series_checksum(rows)
        assert (series_checksum(rows[:17]) + series_checksum(rows[17:], 17)) % 2**64 == whole
        assert series_checksum(rows.astype(rows.dtype.newbyteorder(">"))) == whole
        flat = rows.reshape(-1).view(np.uint8)
        for byte in rng.choice(flat.size, 20, replace=False):
            changed = flat.copy()
            changed[byte] ^= 1 << int(rng.integers(8))
            assert series_checksum(changed.view(rows.dtype).reshape(rows.shape)) != whole
        assert series_checksum(rows[::-1]) != whole  # positions count


def test_resume_truncates_to_the_checkpoint_without_a_copy(tmp_path):
    path = tmp_path / "e.h5"
    new_file(path, 100)
    inode = os.stat(path).st_ino
    writer = EnsembleWriter(str(path), attributes(), OBSERVABLES, MPI.COMM_SELF,
                            resume=lengths_of(60))
    assert os.stat(path).st_ino == inode  # the head moved, nothing was copied
    assert assert_is_prefix(path) == 60
    record(writer, 61, 75)
    assert writer.commit() == lengths_of(75)
    assert assert_is_prefix(path) == 75
    EnsembleWriter(str(path), attributes(), OBSERVABLES, MPI.COMM_SELF, resume=lengths_of(0))
    assert assert_is_prefix(path) == 0


def test_resume_refuses_what_it_cannot_continue(tmp_path):
    path = tmp_path / "e.h5"
    new_file(path, 30)
    with pytest.raises(OutputError, match="fewer records"):
        EnsembleWriter(str(path), attributes(), OBSERVABLES, MPI.COMM_SELF,
                       resume=lengths_of(40))
    with pytest.raises(OutputError, match="no series topological_charge of this theory"):
        EnsembleWriter(str(path), attributes(), OBSERVABLES + (Observable("topological_charge"),),
                       MPI.COMM_SELF, resume=lengths_of(20))
    with pytest.raises(OutputError, match="series observables/correlator that this theory"):
        EnsembleWriter(str(path), attributes(), OBSERVABLES[:3], MPI.COMM_SELF,
                       resume=lengths_of(20))
    with pytest.raises(OutputError, match="of the run to continue is missing"):
        EnsembleWriter(str(tmp_path / "none.h5"), attributes(), OBSERVABLES, MPI.COMM_SELF,
                       resume=lengths_of(0))
    with pytest.raises(OutputError, match="exists"):
        EnsembleWriter(str(path), attributes(), OBSERVABLES, MPI.COMM_SELF)
    assert assert_is_prefix(path) == 30


def test_resume_to_a_damaged_commit_record_rebuilds_from_verified_data(tmp_path):
    path = tmp_path / "e.h5"
    new_file(path, 100)
    with h5py.File(path, "r") as f:
        rows, _ = commit_log(f, last_commit(f))
        offset, row_bytes = f["committed/log"].id.get_offset(), rows[0].nbytes
    j = int(np.nonzero(rows[:, 0] == 50)[0][0])
    with open(path, "r+b") as f:  # a bit of the commit record of 50 trajectories flips
        f.seek(offset + j * row_bytes + 20)
        byte = f.read(1)[0]
        f.seek(-1, 1)
        f.write(bytes([byte ^ 4]))
    _, bad = info.inspect(str(path))
    assert bad == [f"committed/log rows [{j}]"]
    EnsembleWriter(str(path), attributes(), OBSERVABLES, MPI.COMM_SELF, resume=lengths_of(50))
    assert assert_is_prefix(path) == 50


def test_a_repacked_file_is_continued(tmp_path):
    """h5repack (here: a copy with chunked, compressed series) leaves no offsets to append
    at: the resume copies the file back into the layout of commits."""
    path, packed = tmp_path / "e.h5", tmp_path / "packed.h5"
    new_file(path, 30)
    with h5py.File(path, "r") as f, h5py.File(packed, "w") as g:
        g.attrs.update(f.attrs)
        names = []
        f.visititems(lambda name, d: names.append(name) if isinstance(d, h5py.Dataset) else None)
        for name in names:
            g.create_dataset(name, data=f[name][()], compression="gzip")
            g[name].attrs.update(f[name].attrs)
    assert assert_is_prefix(packed) == 30
    writer = EnsembleWriter(str(packed), attributes(), OBSERVABLES, MPI.COMM_SELF,
                            resume=lengths_of(20))
    record(writer, 21, 40)
    writer.commit()
    assert assert_is_prefix(packed) == 40


def test_a_run_grows_beyond_its_capacity(tmp_path):
    path = tmp_path / "e.h5"
    writer = new_file(path, n_trajectories=10)  # room for 10 trajectories, 5 measurements
    copies, inode = 0, os.stat(path).st_ino
    for first in range(1, 421, 7):  # 60 commits of 7
        record(writer, first, first + 6)
        writer.commit()
        copies += os.stat(path).st_ino != inode
        inode = os.stat(path).st_ino
    assert assert_is_prefix(path) == 420
    with h5py.File(path, "r") as f:
        capacities = (f["mc/trajectory"].shape[0], f["observables/trajectory"].shape[0],
                      f["committed/log"].shape[0])
        assert len(commit_log(f, last_commit(f))[0]) == 61  # every commit is kept
    assert capacities[:2] == (640, 320)  # doubled 6 times
    assert 6 <= copies <= 12  # one per doubling of a group: amortised O(1) per record
    # a continued run with more trajectories is sized for them at once
    EnsembleWriter(str(path), attributes(5000), OBSERVABLES, MPI.COMM_SELF,
                   resume=lengths_of(420))
    with h5py.File(path, "r") as f:
        assert f["mc/trajectory"].shape == (5000,)
    assert assert_is_prefix(path) == 420


# --- what a commit writes -----------------------------------------------------------------

def storage_regions(path):
    """{dataset: (byte offset, bytes per row)} of every dataset."""
    regions = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, d: regions.__setitem__(name, (
            d.id.get_offset(), d.dtype.itemsize * int(np.prod(d.shape[1:]))))
                     if isinstance(d, h5py.Dataset) else None)
    return regions


def changed_bytes(before, after):
    assert len(before) == len(after)
    return np.nonzero(np.frombuffer(before, np.uint8) != np.frombuffer(after, np.uint8))[0]


def test_a_commit_writes_only_its_records_one_log_row_and_one_head_slot(tmp_path):
    """The crash-safety argument: after creation, no HDF5 metadata is ever written, so no
    instant of a commit leaves the file unreadable. A commit changes the bytes of its new rows,
    of the next log row and of one head slot only; opening the file read-write and closing
    it changes nothing."""
    path = tmp_path / "e.h5"
    writer = new_file(path, 37, n_trajectories=1000)
    regions = storage_regions(path)
    before = path.read_bytes()
    with h5py.File(path, "r+"):
        pass
    with h5py.File(path, "r") as f:
        f["observables/correlator"][()]
    assert path.read_bytes() == before
    with h5py.File(path, "r") as f:
        old = last_commit(f)
    record(writer, 38, 70)
    writer.commit()
    after = path.read_bytes()
    allowed = np.zeros(len(before), bool)
    for name, (offset, row) in regions.items():
        group = name.split("/")[0]
        if group in GROUPS:
            n0, n1 = old.lengths[group], lengths_of(70)[group]
            allowed[offset + n0 * row:offset + n1 * row] = True
    log_offset, log_row = regions["committed/log"]
    allowed[log_offset + (old.row + 1) * log_row:log_offset + (old.row + 2) * log_row] = True
    head_offset, slot = regions["committed/head"]
    newer = (old.sequence + 1) % 2
    allowed[head_offset + newer * slot:head_offset + (newer + 1) * slot] = True
    changed = changed_bytes(before, after)
    assert changed.size and allowed[changed].all()
    # a resume to an earlier commit rewrites one head slot
    EnsembleWriter(str(path), attributes(), OBSERVABLES, MPI.COMM_SELF, resume=lengths_of(20))
    changed = changed_bytes(after, path.read_bytes())
    assert changed.size and changed.min() >= head_offset and changed.max() < head_offset + 2 * slot


def test_a_torn_head_slot_leaves_the_previous_commit(tmp_path):
    path = tmp_path / "e.h5"
    new_file(path, 50)
    with h5py.File(path, "r") as f:
        commit, head = last_commit(f), f["committed/head"].id.get_offset()
    with open(path, "r+b") as f:  # the newer slot half written
        f.seek(head + (commit.sequence % 2) * 24 + 8)
        f.write(b"\x55" * 8)
    assert assert_is_prefix(path) == 40
    with open(path, "r+b") as f:
        f.seek(head)
        f.write(b"\x55" * 48)
    with pytest.raises(DamagedError, match="no valid commit record"):
        committed(path)
    result = lqcdflow(["info", str(path)])
    assert result.returncode == 1 and "committed/head" in result.stderr


# --- damage ---------------------------------------------------------------------------------

def flip(path, dataset, row, byte=3):
    """Flip bits of one byte of ``row`` of ``dataset`` in the file."""
    with h5py.File(path, "r") as f:
        d = f[dataset]
        offset = d.id.get_offset() + row * d.dtype.itemsize * int(np.prod(d.shape[1:])) + byte
    with open(path, "r+b") as f:
        f.seek(offset)
        value = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([value ^ 0xFF]))


def test_a_flipped_byte_is_found_by_info_and_refused_by_analyze(tmp_path, monkeypatch):
    path = tmp_path / "e.h5"
    new_file(path, 40, n_trajectories=100)
    result = lqcdflow(["info", str(path)])
    assert result.returncode == 0, result.stderr
    assert "checksum ok" in result.stdout and "commits: 4, room for 100 trajectories" in \
        result.stdout
    flip(path, "observables/trajectory", 30)  # a spare row: not a record
    assert lqcdflow(["info", str(path)]).returncode == 0
    flip(path, "observables/correlator", 7, byte=100)
    result = lqcdflow(["info", str(path)])
    assert result.returncode == 1
    assert result.stderr == "lqcdflow: error: checksum mismatch in observables/correlator\n"
    (line,) = [x for x in result.stdout.splitlines() if "observables/correlator" in x]
    assert "(20, 16)" in line and "CHECKSUM MISMATCH" in line
    monkeypatch.setattr(read, "RETRY_SECONDS", 0.0)
    with pytest.raises(AnalysisError, match="checksum mismatch in observables/correlator"):
        read.load([str(path)])


# --- reading while writing, and SIGKILL --------------------------------------------------

def writer_process(path, seed, p_earlier, growth):
    """The writer process (see the module docstring); prints "ready" when it appends."""
    return subprocess.Popen([sys.executable, __file__, str(path), str(seed), str(p_earlier),
                             str(growth)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)


def stop(process):
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def test_a_file_is_read_while_it_is_written(tmp_path):
    path = tmp_path / "e.h5"
    new_file(path, 10, n_trajectories=64)
    writer = writer_process(path, 1, 0.0, 1)
    try:
        assert writer.stdout.readline().strip() == "ready"
        seen, deadline = set(), time.monotonic() + 4
        while time.monotonic() < deadline or len(seen) < 3:
            (r,) = read.load([str(path)]).replicas
            n = len(r.mc_trajectory)
            want = expected(n)
            np.testing.assert_array_equal(r.mc_trajectory, want["mc/trajectory"])
            np.testing.assert_array_equal(r.trajectory, want["observables/trajectory"])
            np.testing.assert_array_equal(r.observables["correlator"],
                                          want["observables/correlator"])
            seen.add(n)
            assert time.monotonic() < deadline + 20
    finally:
        stop(writer)
    assert len(seen) >= 3


def test_sigkill_at_random_instants_leaves_a_verified_prefix(tmp_path):
    """A writer killed 12 times at random instants: in its start-up, its resume to the last
    or an earlier commit (a head rewrite and a copy into a file twice as large), or its
    commits (writes, fsyncs, growth copies); the file always opens, verifies and holds a
    prefix of the records, and the writer's progress survives."""
    path = tmp_path / "e.h5"
    new_file(path, 10, n_trajectories=32)
    started = time.monotonic()
    first = writer_process(path, 0, 0.0, 1)
    assert first.stdout.readline().strip() == "ready"
    startup = time.monotonic() - started
    stop(first)
    rng = random.Random(2026)
    lengths = []
    for seed in range(1, 13):
        process = writer_process(path, seed, 0.3, 2)
        time.sleep(rng.uniform(0.5, 2.0) * startup)
        stop(process)
        lengths.append(assert_is_prefix(path))
    assert max(lengths) > 32  # it grew across kills


def signature(path):
    """(inode, mtime) of a file, None if there is none."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns


def test_sigkill_during_a_growth_copy_keeps_the_file(tmp_path):
    """Writers killed within 20 ms of starting to copy the file into one twice as large
    (about as long as the copy takes): the file is the old one, or the new one if the rename
    came first; a temporary left behind is overwritten by the next copy."""
    path, temporary = tmp_path / "e.h5", tmp_path / "e.h5.tmp"
    new_file(path, 5000, n_trajectories=5000, commit_every=1000)
    rng = random.Random(7)
    for seed in range(6):
        left = signature(temporary)
        process = writer_process(path, seed, 0.0, 2)
        deadline = time.monotonic() + 60
        while signature(temporary) in (None, left):  # until this writer's copy begins
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.0005)
        time.sleep(rng.uniform(0.0, 0.02))
        stop(process)
        assert assert_is_prefix(path) >= 5000


# --- files of version 2 ---------------------------------------------------------------------

def write_version_2(path, n):
    """An ensemble of the first n trajectories in the layout of format version 2: series of
    exactly their lengths, chunked and resizable, each with its SHA-256 attribute."""
    data = expected(n)
    with h5py.File(path, "w") as f:
        f.attrs.update(attributes(n))
        f.attrs["format_version"] = 2
        for name, rows in data.items():
            row_bytes = rows.dtype.itemsize * int(np.prod(rows.shape[1:]))
            d = f.create_dataset(name, data=rows, maxshape=(None,) + rows.shape[1:],
                                 chunks=(max(1, 65536 // row_bytes),) + rows.shape[1:])
            d.attrs["sha256"] = array_sha256(d[()])
        f["observables/correlator"].attrs["description"] = "C(t)"


def test_a_version_2_file_is_read_verified_and_continued(tmp_path):
    path = tmp_path / "v2.h5"
    write_version_2(path, 60)
    (r,) = read.load([str(path)]).replicas
    np.testing.assert_array_equal(r.observables["polyakov"], expected(60)["observables/polyakov"])
    result = lqcdflow(["info", str(path)])
    assert result.returncode == 0 and "format version 2" in result.stdout
    assert "sha256 ok" in result.stdout
    with h5py.File(path, "a") as f:  # an old writer in the middle of a flush: m ahead
        f["mc/delta_H"].resize(63, axis=0)
    assert len(read.load([str(path)]).replicas[0].mc_trajectory) == 60
    with h5py.File(path, "a") as f:
        f["mc/delta_H"].resize(60, axis=0)

    writer = EnsembleWriter(str(path), attributes(), OBSERVABLES, MPI.COMM_SELF,
                            resume=lengths_of(50))
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 3
        assert f["observables/correlator"].attrs["description"] == "C(t)"
    assert assert_is_prefix(path) == 50
    record(writer, 51, 80)
    writer.commit()
    assert assert_is_prefix(path) == 80


def test_a_damaged_version_2_file_is_not_continued(tmp_path):
    path = tmp_path / "v2.h5"
    write_version_2(path, 60)
    with h5py.File(path, "r+") as f:
        f["observables/action"][3] += 1
    with pytest.raises(OutputError, match="is damaged .checksum mismatch in observables/action"):
        EnsembleWriter(str(path), attributes(), OBSERVABLES, MPI.COMM_SELF,
                       resume=lengths_of(50))
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 2


# --- a full disk, and MPI -----------------------------------------------------------------

@pytest.fixture
def small_tmpfs(tmpfs):
    """A 1 MiB tmpfs (a disk that fills up)."""
    return tmpfs("1m")


def test_a_full_disk_stops_growth_cleanly_and_commits_need_no_space(small_tmpfs):
    path = small_tmpfs / "e.h5"
    writer = new_file(path, 10, n_trajectories=200)
    free = os.statvfs(small_tmpfs)
    (small_tmpfs / "filler").write_bytes(b"\0" * (free.f_bavail * free.f_frsize - 4096))
    record(writer, 11, 200)
    writer.commit()  # into the storage allocated at creation
    assert assert_is_prefix(path) == 200
    record(writer, 201, 210)
    with pytest.raises(OutputError, match="bytes needed"):
        writer.commit()  # growth needs a copy: refused, the file stays as it was
    assert assert_is_prefix(path) == 200
    assert sorted(os.listdir(small_tmpfs)) == ["e.h5", "filler"]  # no temporary left
    (small_tmpfs / "filler").unlink()
    writer = EnsembleWriter(str(path), attributes(), OBSERVABLES, MPI.COMM_SELF,
                            resume=lengths_of(200))
    record(writer, 201, 210)
    writer.commit()
    assert assert_is_prefix(path) == 210


@pytest.mark.mpi
def test_commits_are_collective(shared_tmp_path, comm):
    path = str(shared_tmp_path / "e.h5")
    writer = EnsembleWriter(path, attributes(20), OBSERVABLES, comm, overwrite=True)
    record(writer, 1, 20)
    assert comm.allgather(writer.commit()) == [lengths_of(20)] * comm.Get_size()
    if comm.Get_rank() == 0:
        assert assert_is_prefix(path) == 20
    comm.Barrier()
    with pytest.raises(OutputError, match="fewer records"):  # on every rank
        EnsembleWriter(path, attributes(), OBSERVABLES, comm, resume=lengths_of(30))


def _append_forever(path, seed, p_earlier, growth):
    rng = np.random.default_rng(seed)
    with h5py.File(path, "r") as f:
        rows, _ = commit_log(f, last_commit(f))
        capacity = f["mc/trajectory"].shape[0]
    row = rows[rng.integers(len(rows))] if rng.random() < p_earlier else rows[-1]
    n = int(row[0])
    writer = EnsembleWriter(path, attributes(growth * capacity), OBSERVABLES, MPI.COMM_SELF,
                            resume=lengths_of(n))
    print("ready", flush=True)
    while True:
        k = int(rng.integers(1, 40))
        record(writer, n + 1, n + k)
        writer.commit()
        n += k


if __name__ == "__main__":
    _append_forever(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))


def test_a_stopped_job_leaves_no_spare_rows(tmp_path):
    """A run planned for 1000 trajectories that stops after 37: close() copies the file to
    exactly its records, so plain h5py sees only records; the next job grows it again."""
    path = tmp_path / "e.h5"
    writer = new_file(path, n_trajectories=1000)
    record(writer, 1, 37)
    writer.commit()
    with h5py.File(path, "r") as f:
        assert f["mc/trajectory"].shape[0] == 1000  # room for the whole run
    assert writer.close() is None
    with h5py.File(path, "r") as f:
        assert f["mc/trajectory"].shape[0] == 37
        assert list(f["mc/trajectory"][()]) == list(range(1, 38))
        assert all(f[f"observables/{n}"].shape[0] == f["observables/trajectory"].shape[0]
                   for n in f["observables"])
    assert assert_is_prefix(path) == 37
    writer = EnsembleWriter(str(path), attributes(1000), OBSERVABLES, MPI.COMM_SELF,
                            resume=lengths_of(37))
    record(writer, 38, 60)
    writer.commit()
    assert assert_is_prefix(path) == 60
    with h5py.File(path, "r") as f:
        assert f["mc/trajectory"].shape[0] == 1000
