"""Stopping a run at any instant (issue 15): a stop signal while MPI starts or while the
closing table is printed does not kill the command, and ``lqcdflow stop RUN.toml`` stops a
running chain with a checkpoint; started again, the chain continues to the uninterrupted
result bit for bit. The batch jobs' side is tested in tests/test_jobs.py."""

import signal
import subprocess
import sys
import time

from mpi4py import MPI

from lqcdflow.mc.stop import EXIT_RESUBMIT, StopRule, request_path, request_stop
from runs import TIMEOUT, interrupted, lqcdflow, one_line_error, series, write_run_file


def test_only_a_request_made_after_the_start_stops(tmp_path):
    run = tmp_path / "r.toml"
    request_stop(run)  # an old request: a chain started again runs
    rule = StopRule(MPI.COMM_SELF, request=request_path(run))
    assert rule.reason() is None
    time.sleep(0.01)
    request_stop(run)
    assert rule.reason() == f"stop requested in {run}.stop"
    rule = StopRule(MPI.COMM_SELF, request=request_path(tmp_path / "other.toml"))
    assert rule.reason() is None


def test_stop_writes_the_request_and_status_shows_it(tmp_path):
    run = write_run_file(tmp_path / "s.toml")
    result = lqcdflow(["stop", str(run)])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"stop requested ({run}.stop): a running lqcdflow")
    status = lqcdflow(["status", str(run)])
    assert status.returncode == 3
    assert status.stdout.splitlines()[-1].startswith(f"{run}.stop: stop requested by "
                                                     "lqcdflow stop at ")
    one_line_error(lqcdflow(["stop", str(tmp_path / "typo.toml")]),
                   f"run file {tmp_path / 'typo.toml'} not found")
    assert not (tmp_path / "typo.toml.stop").exists()


def test_a_stopped_chain_continues_to_the_uninterrupted_result(tmp_path):
    reference = write_run_file(tmp_path / "ref.toml", n_trajectories=400)
    assert lqcdflow(["run", "-q", str(reference)]).returncode == 0
    run = write_run_file(tmp_path / "run.toml", n_trajectories=400)
    result = interrupted(["run", str(run)], lambda: request_stop(run))
    assert result.returncode == 3, result.stderr
    stopped = int(result.stdout.split("stopped at trajectory ")[1].split()[0])
    assert 0 < stopped < 400 and f"(stop requested in {run}.stop)" in result.stdout
    again = lqcdflow(["run", "-q", str(run)])  # the request is older than this run
    assert again.returncode == 0, again.stderr
    assert series(tmp_path / "run.h5") == series(tmp_path / "ref.h5")


# A subprocess running lqcdflow with one of its steps replaced by one that sends the process a
# stop signal first: the signal arrives at a known instant.
SIGNALLED = """
import os, signal, sys
import lqcdflow.cli as cli
name, args = sys.argv[1], sys.argv[2:]
step = getattr(cli, name)
def signalled(*a):
    os.kill(os.getpid(), signal.SIGUSR1)
    return step(*a)
setattr(cli, name, signalled)
raise SystemExit(cli.main(args))
"""


def signalled_during(step, args):
    return subprocess.run([sys.executable, "-c", SIGNALLED, step, *args], capture_output=True,
                          text=True, timeout=TIMEOUT)


def test_a_signal_during_the_closing_table_changes_nothing(tmp_path):
    run = write_run_file(tmp_path / "t.toml", n_trajectories=20)
    result = signalled_during("_print_table", ["run", str(run)])
    assert result.returncode == 0, result.stderr
    assert "t.h5: trajectories after 5" in result.stdout  # the table
    assert lqcdflow(["status", str(run)]).returncode == 0


def test_a_signal_while_mpi_starts_ends_the_command_at_once(tmp_path):
    run = write_run_file(tmp_path / "m.toml", n_trajectories=20)
    result = signalled_during("_on_ranks", ["run", str(run)])
    assert result.returncode == 3
    assert result.stderr == ("lqcdflow: stopped by SIGUSR1 during set-up, before anything was "
                             "written; resubmit to run (exit code 3)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.toml"]


# The entry point (lqcdflow.__main__) with lqcdflow.cli.main replaced by one that is sent a
# stop signal first: it arrives after the entry point's handlers, before the command's own.
EARLY = """
import os, signal, sys
import lqcdflow.__main__ as entry
import lqcdflow.cli as cli
command = cli.main
def signalled(argv, *signal_state):
    os.kill(os.getpid(), signal.SIGUSR1)
    return command(argv, *signal_state)
cli.main = signalled
raise SystemExit(entry.main(sys.argv[1:]))
"""


def test_a_signal_before_the_command_started_is_noted(tmp_path):
    """run: ends at once in order (exit 3, nothing written); status (no stop in order): the
    signal's usual effect, as if it had come a moment later."""
    run = write_run_file(tmp_path / "e.toml", n_trajectories=20)
    result = subprocess.run([sys.executable, "-c", EARLY, "run", str(run)],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("lqcdflow: stopped by SIGUSR1 during set-up")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.toml"]
    status = subprocess.run([sys.executable, "-c", EARLY, "status", str(run)],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert status.returncode == -signal.SIGUSR1


def test_a_command_started_with_a_signal_ignored_keeps_it_ignored(tmp_path):
    """`lqcdflow status` started with SIGUSR1 ignored (the job scripts' `immune` queries, which
    `scancel --full --signal=USR1` reaches too) is not ended by it: it answers as usual."""
    run = write_run_file(tmp_path / "e.toml", n_trajectories=20)
    ignored = "import signal\nsignal.signal(signal.SIGUSR1, signal.SIG_IGN)\n" + EARLY
    status = subprocess.run([sys.executable, "-c", ignored, "status", str(run)],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert status.returncode == EXIT_RESUBMIT, status.stderr  # the chain has not started


def test_signal_module_is_left_as_it_was(tmp_path):
    """In-process commands restore the handlers they installed."""
    from lqcdflow.cli import main

    before = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)}
    run = write_run_file(tmp_path / "i.toml", n_trajectories=10)
    assert main(["run", "-q", str(run)]) == 0
    assert {s: signal.getsignal(s) for s in before} == before
