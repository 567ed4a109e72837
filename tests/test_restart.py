"""Restarts end to end: the chain continued from checkpoints, on other rank counts, after
signals, walltime stops and kill -9 at random instants, equals the uninterrupted chain bitwise.
Every mpiexec run is bounded by a timeout."""

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import h5py
import pytest
from runs import command, interrupted, lqcdflow, series, write_run_file

from lqcdflow.io.checkpoint import list_checkpoints
from lqcdflow.io.ensemble import last_commit
from lqcdflow.mc.stop import EXIT_RESUBMIT


@pytest.fixture
def reference(tmp_path_factory):
    """Series of an uninterrupted 60-trajectory run on one rank."""
    path = write_run_file(tmp_path_factory.mktemp("ref") / "ref.toml", n_trajectories=60)
    assert lqcdflow(["run", "-q", str(path)]).returncode == 0
    return series(path.with_suffix(".h5"))


def test_n_on_4_ranks_then_n_on_2_then_1_equals_2n(tmp_path, reference):
    run = tmp_path / "run.toml"
    for n_trajectories, ranks in ((30, 4), (45, 2), (60, 1)):
        write_run_file(run, n_trajectories=n_trajectories)
        result = lqcdflow(["run", "-q", str(run)], ranks=ranks)
        assert result.returncode == 0, result.stderr
    assert series(tmp_path / "run.h5") == reference


LONG = {"shape = [8, 4]": "shape = [64, 64]", "progress_every = 10": "progress_every = 5"}


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    """Series of an uninterrupted 400-trajectory 64x64 run (a few seconds) on one rank, and
    its wall-clock seconds including start-up."""
    path = write_run_file(tmp_path_factory.mktemp("long") / "ref.toml", n_trajectories=400,
                          **LONG)
    start = time.monotonic()
    assert lqcdflow(["run", "-q", str(path)]).returncode == 0
    return series(path.with_suffix(".h5")), time.monotonic() - start


@pytest.fixture(scope="module")
def long_reference(long_run):
    return long_run[0]


def test_signals_stop_with_checkpoint_and_restarts_complete(tmp_path, long_reference):
    """Cut by SIGUSR1 to mpiexec (2 ranks), then by SIGTERM to a 1-rank run, each once a
    progress line shows the run under way; a third run completes the chain.

    (MPICH's mpiexec forwards the signals to the ranks but does not reliably pass their exit
    code 3 on, e.g. it returns 0 when its stdin is /dev/null: ``lqcdflow status`` tells.)
    """
    run = write_run_file(tmp_path / "run.toml", n_trajectories=400, every=1000, **LONG)
    stopped_at = []
    for sig, ranks in ((signal.SIGUSR1, 2), (signal.SIGTERM, None)):
        result = interrupted(["run", str(run)], sig, ranks=ranks)
        if ranks is None:
            assert result.returncode == EXIT_RESUBMIT, result.stderr
        assert f"signal {sig.name}" in result.stdout, (result.stdout, result.stderr)
        assert lqcdflow(["status", str(run)]).returncode == EXIT_RESUBMIT
        with h5py.File(list_checkpoints(str(tmp_path / "run.ck"))[0], "r") as f:
            stopped_at.append(int(f.attrs["trajectory"]))
    assert 0 < stopped_at[0] < stopped_at[1] < 400
    assert lqcdflow(["run", "-q", str(run)], ranks=2).returncode == 0
    assert lqcdflow(["status", str(run)]).returncode == 0
    assert series(tmp_path / "run.h5") == long_reference


def test_walltime_stops_and_resubmissions_equal_the_uninterrupted_chain(tmp_path,
                                                                        long_reference):
    # the array kernels of the shared run file: a start-up well inside the walltime of 0.4 s
    # (loading the compiled kernels takes ~0.7 s)
    run = write_run_file(tmp_path / "run.toml", n_trajectories=400, every=1000,
                         **LONG, **{"every = 1000": "every = 1000\nmargin = 0.1"})
    stops = 0
    while (result := lqcdflow(["run", "-q", "--walltime", "0.4", str(run)])).returncode:
        assert result.returncode == EXIT_RESUBMIT, result.stderr
        stops += 1
        assert stops < 30
    assert stops >= 2
    assert series(tmp_path / "run.h5") == long_reference


def test_kill_9_at_random_instants_never_loses_the_chain(tmp_path, long_run):
    """Twelve jobs killed with SIGKILL at random instants (start-up, trajectories, commits,
    checkpoint writes), then one left to finish: the chain equals the uninterrupted one.

    The instants are fractions of the uninterrupted run's time T, in [0.1, 0.3] T, so that three
    jobs (at most 0.9 T, each paying the start-up again) cannot finish the chain on a machine of
    any speed, and at least three kills happen."""
    long_reference, seconds = long_run
    run = write_run_file(tmp_path / "run.toml", n_trajectories=400, every=5, **LONG)
    rng = random.Random(2026)
    kills = 0
    for _ in range(12):
        process = subprocess.Popen(command(["run", "-q", str(run)]), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            process.wait(timeout=rng.uniform(0.1, 0.3) * seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            kills += 1
            continue
        assert process.returncode == 0, process.stderr.read()
        break
    assert kills >= 3
    assert lqcdflow(["run", "-q", str(run)]).returncode == 0
    assert series(tmp_path / "run.h5") == long_reference
    assert not [n for n in os.listdir(tmp_path / "run.ck") if n.endswith(".tmp")]


KILLED_IN_FIRST_CHECKPOINT = """
import os, sys
from lqcdflow import __main__
from lqcdflow.io import checkpoint

def killed(directory, lattice, spec, state, *args):
    if state.trajectory:  # the output is committed, its checkpoint not yet written
        os._exit(9)
    return save(directory, lattice, spec, state, *args)

save, checkpoint.save = checkpoint.save, killed
sys.exit(__main__.main(sys.argv[1:]))
"""


def test_killed_between_first_commit_and_first_checkpoint_continues(tmp_path, reference):
    """The one instant where the output holds records of a chain that has no periodic
    checkpoint yet: the chain continues from the checkpoint of its start."""
    run = write_run_file(tmp_path / "run.toml", n_trajectories=60)
    script = tmp_path / "killed.py"
    script.write_text(KILLED_IN_FIRST_CHECKPOINT)
    killed = subprocess.run([sys.executable, str(script), "run", "-q", str(run)],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == 9, killed.stderr
    with h5py.File(tmp_path / "run.h5", "r") as f:
        assert last_commit(f).lengths["mc"] == 10
    result = lqcdflow(["run", "-q", str(run)], ranks=2)
    assert result.returncode == 0, result.stderr
    assert series(tmp_path / "run.h5") == reference


def test_corrupt_newest_checkpoint_is_skipped_with_a_warning(tmp_path, reference):
    run = write_run_file(tmp_path / "run.toml", n_trajectories=30)
    assert lqcdflow(["run", "-q", str(run)]).returncode == 0
    newest = list_checkpoints(str(tmp_path / "run.ck"))[0]
    with h5py.File(newest, "r") as f:
        offset = f["fields/phi"].id.get_offset()
    with open(newest, "r+b") as f:
        f.seek(offset + 3)
        f.write(b"\xff")
    write_run_file(run, n_trajectories=60)
    result = lqcdflow(["run", "-q", str(run)], ranks=2)
    assert result.returncode == 0, result.stderr
    assert f"skipping checkpoint {newest}: field checksum mismatch" in result.stderr
    assert series(tmp_path / "run.h5") == reference


def test_mismatched_run_file_is_refused(tmp_path):
    run = write_run_file(tmp_path / "run.toml", n_trajectories=20)
    assert lqcdflow(["run", "-q", str(run)]).returncode == 0
    before = series(tmp_path / "run.h5")
    write_run_file(run, n_trajectories=40, **{"kappa = 0.2": "kappa = 0.21"})
    result = lqcdflow(["run", "-q", str(run)])
    assert result.returncode == 2
    assert "belongs to another run: theory.kappa = 0.2 there, 0.21 in the run file" in \
        result.stderr
    assert series(tmp_path / "run.h5") == before


@pytest.fixture
def small_tmpfs(tmpfs):
    """A 160 KiB tmpfs (a disk that fills up)."""
    return tmpfs("160k")


def test_full_disk_gives_a_clear_error_and_keeps_the_old_data(tmp_path, small_tmpfs):
    checkpoints_on_tmpfs = {"shape = [8, 4]": "shape = [64, 64]",
                            f'directory = "{tmp_path / "run.ck"}"':
                            f'directory = "{small_tmpfs / "ck"}"\nkeep = 1'}
    run = write_run_file(tmp_path / "run.toml", n_trajectories=20, **checkpoints_on_tmpfs)
    assert lqcdflow(["run", "-q", str(run)]).returncode == 0
    checkpoints = list_checkpoints(str(small_tmpfs / "ck"))
    assert len(checkpoints) == 1
    free = shutil.disk_usage(small_tmpfs).free
    (small_tmpfs / "filler").write_bytes(b"\0" * (free - 8192))
    write_run_file(run, n_trajectories=40, **checkpoints_on_tmpfs)
    result = lqcdflow(["run", "-q", str(run)], ranks=2)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lqcdflow: error: cannot write checkpoint")
    assert list_checkpoints(str(small_tmpfs / "ck")) == checkpoints
    assert lqcdflow(["info", *checkpoints]).returncode == 0
    (small_tmpfs / "filler").unlink()
    assert lqcdflow(["run", "-q", str(run)], ranks=2).returncode == 0


def test_info_verifies_every_kind_of_file(tmp_path):
    run = write_run_file(tmp_path / "run.toml", n_trajectories=20,
                         **{'progress_every = 10': 'progress_every = 10\nconfigurations = "'
                            + str(tmp_path / "cfg.h5") + '"\nsave_every = 5'})
    assert lqcdflow(["run", "-q", str(run)], ranks=2).returncode == 0
    files = [str(tmp_path / "run.h5"), str(tmp_path / "cfg.h5"),
             *list_checkpoints(str(tmp_path / "run.ck"))]
    result = lqcdflow(["info", *files])
    assert result.returncode == 0, result.stderr
    assert "lqcdflow-ensemble" in result.stdout and "configurations: 4" in result.stdout
    assert "all field checksums ok" in result.stdout and "checksum ok" in result.stdout
    with h5py.File(tmp_path / "run.h5", "r+") as f:
        f["observables/m2"][3] += 1.0
    result = lqcdflow(["info", files[0]])
    assert result.returncode == 1
    assert "checksum mismatch in observables/m2" in result.stderr
    assert lqcdflow(["info", str(run)]).returncode == 2
