"""One writer per chain: a second process on the same output, configurations, checkpoint
directory or flow state is refused with one line naming the first; a dead writer leaves no
lock behind; runs started together at random offsets never interleave an ensemble."""

import random
import signal
import subprocess
import sys
import textwrap

import pytest
from mpi4py import MPI
from runs import command, lqcdflow, one_line_error, series, write_run_file

from lqcdflow.io.locks import LockError, WriterLock, lock_path

HOLD = textwrap.dedent("""
    import sys, time
    from mpi4py import MPI
    from lqcdflow.io.locks import WriterLock
    with WriterLock(MPI.COMM_SELF, [(sys.argv[1], "output file")]):
        print("locked", flush=True)
        time.sleep(60)
""")


def holding(path):
    """A process that holds the lock of ``path`` until killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_held_lock_refuses_another_process_and_dies_with_its_holder(tmp_path):
    path = tmp_path / "out.h5"
    holder = holding(path)
    try:
        with pytest.raises(LockError, match=rf"output file {path} is being written by another "
                           rf"lqcdflow process \(pid {holder.pid} on "):
            with WriterLock(MPI.COMM_SELF, [(str(path), "output file")]):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with WriterLock(MPI.COMM_SELF, [(str(path), "output file")]):  # free once it died
        assert "pid" in open(lock_path(str(path))).read()
    with pytest.raises(LockError, match="cannot create output file"):
        with WriterLock(MPI.COMM_SELF, [(str(tmp_path / "no" / "x.h5"), "output file")]):
            pass


@pytest.mark.parametrize("shared", ["run file", "output file", "checkpoint directory"])
def test_a_second_run_on_a_chain_being_written_is_refused(tmp_path, shared):
    first = write_run_file(tmp_path / "a.toml", 100000, 5)
    second = {"run file": first,
              "output file": write_run_file(tmp_path / "b.toml", 20, 10, **{
                  f'directory = "{tmp_path / "b.ck"}"': f'directory = "{tmp_path / "own.ck"}"',
                  f'file = "{tmp_path / "b.h5"}"': f'file = "{tmp_path / "a.h5"}"'}),
              "checkpoint directory": write_run_file(tmp_path / "c.toml", 20, 10, **{
                  f'directory = "{tmp_path / "c.ck"}"': f'directory = "{tmp_path / "a.ck"}"'}),
              }[shared]
    running = subprocess.Popen(command(["run", str(first)], ranks=2), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        for line in running.stdout:  # a progress line: locks held, checkpoints written
            if line.startswith("traj"):
                break
        result = lqcdflow(["run", str(second)], ranks=2)
        one_line_error(result, "is being written by another lqcdflow process (pid ")
        assert "one chain has one writer" in result.stderr
    finally:
        running.send_signal(signal.SIGKILL)
        running.wait()
    if shared == "run file":  # the killed writer leaves no lock: its chain continues
        first.write_text(first.read_text().replace("n_trajectories = 100000",
                                                   "n_trajectories = 20"))
        assert lqcdflow(["run", "-q", str(first)], ranks=2).returncode == 0


def test_runs_started_at_random_offsets_never_interleave(tmp_path):
    """Two runs of one run file, the second started 0 to 1.5 s after the first, three times:
    each time one of them writes the chain (the other is refused, or finds it complete), and
    the ensemble equals an uninterrupted run's."""
    reference = write_run_file(tmp_path / "ref.toml", 300, 50)
    assert lqcdflow(["run", "-q", str(reference)]).returncode == 0
    rng = random.Random(4)
    for attempt in range(3):
        run = write_run_file(tmp_path / f"r{attempt}.toml", 300, 50)
        processes = [subprocess.Popen(command(["run", "-q", str(run)], ranks=2),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True)]
        try:
            processes[0].wait(timeout=rng.uniform(0.0, 1.5))
        except subprocess.TimeoutExpired:
            pass
        processes.append(subprocess.Popen(command(["run", "-q", str(run)], ranks=2),
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
        results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
        assert results[0][0] == 0, results
        assert results[1][0] == 0 or "is being written by another" in results[1][1], results
        assert series(tmp_path / f"r{attempt}.h5") == series(tmp_path / "ref.h5")
