"""The batch scripts in jobs/: shellcheck; the Slurm and PBS scripts' resubmission, signal and
walltime logic, and their sequence of commands (``LQCDFLOW_COMMANDS="train sample"``), with
stand-ins for the batch system, the launcher and lqcdflow; and, on a one-node Slurm on localhost
(tools/slurm_local.sh), an HMC chain cut twice by SIGUSR1 and a flow cut by SIGUSR1 while it
trains, which resubmit themselves, complete and must equal the uninterrupted runs bit for bit.

Every subprocess and every wait is bounded by a timeout."""

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
from runs import series, write_run_file

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = {"slurm": REPO / "jobs" / "slurm" / "lqcdflow.sbatch",
           "pbs": REPO / "jobs" / "pbs" / "lqcdflow.pbs"}
HELPERS = REPO / "lqcdflow" / "jobs" / "common.sh"
SHELL_FILES = [HELPERS, *SCRIPTS.values(), REPO / "tools" / "slurm_local.sh"]
# Variables of a surrounding batch job or of the job scripts must not leak into the tests.
FOREIGN_ENV = ("SLURM_", "SBATCH_", "PBS_", "LQCDFLOW_")


def clean_environ(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV)}
    env.update(extra)
    return env


# ------------------------------------------------------------------------------ static checks

def test_shellcheck_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (tools/setup.sh installs it)")
    result = subprocess.run(["shellcheck", "-x", *map(str, SHELL_FILES)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", SHELL_FILES, ids=lambda p: p.name)
def test_bash_syntax(path):
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("text, seconds", [
    ("1-02:03:04", "93784"), ("1:00:00", "3600"), ("08:09", "489"), ("0:59", "59"),
    ("10:08:09", "36489"), ("UNLIMITED", ""), ("NOT_SET", ""), ("", "")])
def test_duration_seconds(text, seconds):
    result = subprocess.run(["bash", "-c", 'source "$1"; duration_seconds "$2"', "-",
                             str(HELPERS), text],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.strip() == seconds, result.stderr


# -------------------------------------------------------------------------------- stand-ins
# lqcdflow: takes the next action of a launched command from $STANDIN/plan: an exit code N
# (after making progress), "stall:N" (exit N without progress), "signal:N" (wait for SIGUSR1,
# then exit N), "die:SIG" (die of signal SIG), "complete-die:SIG" (complete, then die of SIG),
# "request:N" (as `lqcdflow stop` was run meanwhile: write the stop request, exit N), "hang"
# (never exit unless killed).
# `lqcdflow status` prints the progress so far (a counter) and answers `--train` 0 once a
# `train` exited 0 unsignalled, and without it 0 once a `run` or `sample` did. The launcher
# records its command line and execs the rest, so a signal forwarded to it reaches the stand-in
# lqcdflow. sbatch/qsub queue the job with its environment for the test's scheduler
# (run_jobs), which runs the queue in order like a batch system: a copy of the script in a
# spool directory, with the batch system's variables set.

STANDIN_LQCDFLOW = r"""#!/bin/bash
set -eu
progress=$STANDIN/progress
if [ "$1" = status ]; then  # complete once the command has exited 0 without being signalled
    echo x >>"$STANDIN/status-calls"
    if [ "$(wc -l <"$STANDIN/status-calls")" = "${STANDIN_SLOW_STATUS:-}" ]; then
        touch "$STANDIN/in-status"
        sleep 1
    fi
    echo "progress $(cat "$progress" 2>/dev/null || echo 0)"
    if [ "$2" = --train ]; then set -- train; else set -- run sample; fi
    for command; do [ -e "$STANDIN/complete-$command" ] && exit 0; done
    exit 3
fi
action=$(head -n 1 "$STANDIN/plan")
sed -i 1d "$STANDIN/plan"
case $action in
    stall:* | die:* | complete-die:* | hang) ;;
    *) echo $(( $(cat "$progress" 2>/dev/null || echo 0) + 1 )) >"$progress" ;;
esac
case $action in
    signal:*)
        trap 'echo "lqcdflow got USR1" >>"$STANDIN/calls"; exit "${action#signal:}"' USR1
        touch "$STANDIN/running"
        while :; do sleep 0.05 & wait $!; done ;;
    stall:*) exit "${action#stall:}" ;;
    hang)  # ranks that never stop (one died, the others wait for it)
        trap 'echo "lqcdflow got USR1" >>"$STANDIN/calls"' USR1
        touch "$STANDIN/running"
        while :; do sleep 0.05 & wait $! || true; done ;;
    complete-die:*) touch "$STANDIN/complete-$1"; kill -s "${action#*:}" $$ ;;
    die:*) kill -s "${action#die:}" $$ ;;
    request:*) echo "stop requested by lqcdflow stop" >"$2.stop"; exit "${action#request:}" ;;
    0) touch "$STANDIN/complete-$1"; exit 0 ;;
    *) exit "$action" ;;
esac
"""
STANDIN_LAUNCHER = r"""#!/bin/bash
echo "launch $*" >>"$STANDIN/calls"
shift 2  # -n RANKS
exec "$@"
"""
STANDIN_SUBMIT = r"""#!/bin/bash
set -eu
id=$(( $(cat "$STANDIN/next_id") ))
echo $((id + 1)) >"$STANDIN/next_id"
printf '%s\n' "$(basename "$0")" "$@" >"$STANDIN/queue/$id.args"
env -0 >"$STANDIN/queue/$id.env"
if [ "$(basename "$0")" = qsub ]; then echo "$id.standin"; else echo "$id"; fi
"""
STANDIN_SQUEUE = 'echo "$STANDIN_TIMELEFT"\n'
# scontrol writes line by line: the lines after the state come a moment later.
STANDIN_SCONTROL = ('printf "JobId=%s JobName=lqcdflow\\n   JobState=%s Reason=%s '
                    'Dependency=(null)\\n" "$3" "$STANDIN_STATE" "$STANDIN_REASON"\n'
                    'sleep 0.1\n'
                    'printf "   Command=%s\\n" "$STANDIN_SCRIPT"\n')
STANDIN_QSTAT = 'echo "    Resource_List.walltime = 00:10:00"\n'


@pytest.fixture
def standin(tmp_path):
    """A directory with the stand-ins in bin/, a queue, and the work (submit) directory."""
    root = tmp_path / "standin"
    (root / "bin").mkdir(parents=True)
    (root / "queue").mkdir()
    (root / "next_id").write_text("2\n")  # job 1 is the first submission
    for name, text in {"lqcdflow": STANDIN_LQCDFLOW, "standin-launch": STANDIN_LAUNCHER,
                       "sbatch": STANDIN_SUBMIT, "qsub": STANDIN_SUBMIT,
                       "squeue": STANDIN_SQUEUE, "scontrol": STANDIN_SCONTROL,
                       "qstat": STANDIN_QSTAT}.items():
        path = root / "bin" / name
        path.write_text(text if text.startswith("#!") else "#!/bin/bash\n" + text)
        path.chmod(0o755)
    (tmp_path / "work").mkdir()
    (tmp_path / "home").mkdir()
    return root


def first_env(kind, standin, script=None, **extra):
    """The environment of the first submission of ``script`` (default: the repository's), as
    a user would have it: this Python's environment (which finds lqcdflow's job helpers)
    after the stand-ins on the PATH."""
    script = str(script or SCRIPTS[kind])
    path = f"{standin / 'bin'}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    env = clean_environ(PATH=path, STANDIN=str(standin), STANDIN_SCRIPT=script,
                        STANDIN_TIMELEFT="1-02:03:04", STANDIN_STATE="RUNNING",
                        STANDIN_REASON="None", HOME=str(standin.parent / "home"),
                        LQCDFLOW_VENV="", LQCDFLOW_LAUNCHER="standin-launch",
                        LQCDFLOW_RUN_FILE="run.toml")
    if kind == "pbs":  # qsub -v LQCDFLOW_JOB_SCRIPT=...
        env["LQCDFLOW_JOB_SCRIPT"] = script
    env.update(extra)
    return env


def read_env(path):
    items = path.read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in items if b"=" in item)


def run_jobs(kind, standin, env, plan, signals=None, max_jobs=6, when="running"):
    """Run the first job and every job it resubmits, in order; returns their exit statuses.

    plan: the stand-in lqcdflow's actions, one per run; signals: {job index: signal name} to
    send to that job's batch shell once the stand-in lqcdflow runs (or, ``when="in-status"``,
    once a slow `lqcdflow status` runs).
    """
    (standin / "plan").write_text("".join(f"{a}\n" for a in plan))
    work = standin.parent / "work"
    queue, statuses = [env], []
    while queue:
        assert len(statuses) < max_jobs, "too many jobs"
        job = dict(queue.pop(0))
        index = len(statuses) + 1
        spool = standin.parent / "spool" / str(index)
        spool.mkdir(parents=True, exist_ok=True)
        script = spool / "script"  # batch systems run a copy of the script
        shutil.copy(job["STANDIN_SCRIPT"], script)
        if kind == "slurm":
            job.update(SLURM_JOB_ID=str(index), SLURM_NTASKS="2", SLURM_SUBMIT_DIR=str(work))
            cwd, log = work, open(work / "lqcdflow.log", "a")  # --open-mode=append
        else:
            nodefile = spool / "nodefile"
            nodefile.write_text("node1\nnode1\n")
            job.update(PBS_JOBID=f"{index}.standin", PBS_O_WORKDIR=str(work),
                       PBS_NODEFILE=str(nodefile))
            cwd, log = standin.parent / "home", open(spool / "pbs.out", "w")
        with log:
            process = subprocess.Popen(["bash", str(script)], cwd=cwd, env=job, stdout=log,
                                       stderr=subprocess.STDOUT)
            try:
                if signals and index in signals:
                    wait_for(lambda: (standin / when).exists(), 20, "stand-in lqcdflow")
                    (standin / when).unlink()
                    process.send_signal(getattr(signal, "SIG" + signals[index]))
                statuses.append(process.wait(timeout=30))
            finally:
                if process.poll() is None:
                    process.kill()
        for path in sorted((standin / "queue").glob("*.env"), key=lambda p: int(p.stem)):
            queue.append(read_env(path))
            path.rename(path.with_suffix(".env.done"))
    return statuses


def wait_for(predicate, timeout, what, details=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{details()}")


def calls(standin):
    path = standin / "calls"
    return path.read_text().splitlines() if path.exists() else []


def submissions(standin):
    return [p.read_text().splitlines() for p in
            sorted((standin / "queue").glob("*.args"), key=lambda p: int(p.stem))]


def log_text(standin, kind=None):
    """The chain's log; with ``kind`` "slurm" or "pbs": its jobs' output, wherever it went."""
    text = (standin.parent / "work" / "lqcdflow.log").read_text()
    if kind == "pbs":
        text += "".join(p.read_text() for p in (standin.parent / "spool").glob("*/pbs.out"))
    return text


# ------------------------------------------------------------------------ stand-in tests

@pytest.mark.parametrize("kind", ["slurm", "pbs"])
def test_resubmits_until_complete(kind, standin):
    statuses = run_jobs(kind, standin, first_env(kind, standin), plan=[3, 3, 0])
    assert statuses == [0, 0, 0]
    launches = calls(standin)
    assert len(launches) == 3
    for launch in launches:
        walltime = int(re.fullmatch(r"launch -n 2 lqcdflow run run\.toml --restart auto "
                                    r"--walltime (\d+)", launch).group(1))
        if kind == "slurm":  # squeue's %L
            assert walltime == 93784
        else:  # qstat's Resource_List.walltime less the seconds the job has run
            assert 590 <= walltime <= 600
    submitter = {"slurm": "sbatch", "pbs": "qsub"}[kind]
    for args in submissions(standin):
        assert args[0] == submitter and args[-1] == str(SCRIPTS[kind])
    queued = queued_envs(standin)
    assert [e["LQCDFLOW_RESUBMIT_COUNT"] for e in queued] == ["1", "2"]
    assert [e["LQCDFLOW_FAILURES"] for e in queued] == ["0", "0"]
    assert {e["LQCDFLOW_JOB_SCRIPT"] for e in queued} == {str(SCRIPTS[kind])}
    log = log_text(standin)  # one log, appended to by every job
    assert log.count("] segment ") == 3
    for job in (2, 3):
        assert re.search(rf"resubmitted as job {job}(\.standin)? \(segment {job}\)", log), log
    assert log.count("lqcdflow run stopped early with a checkpoint (exit 3; a launcher's "
                     '"Exited with exit code 3" is this planned stop)') == 2
    assert log.count("chain complete") == 1


def queued_envs(standin):
    return [read_env(p) for p in sorted((standin / "queue").glob("*.env.done"),
                                        key=lambda p: int(p.name.split(".")[0]))]


@pytest.mark.parametrize("kind, code", [("slurm", 2), ("pbs", 2), ("slurm", 1), ("pbs", 1)])
def test_bad_input_or_failure_stops_the_chain(kind, standin, code):
    statuses = run_jobs(kind, standin, first_env(kind, standin), plan=[3, code])
    assert statuses == [0, code]
    assert len(submissions(standin)) == 1
    log = log_text(standin)
    assert ("bad input (exit 2)" if code == 2 else f"failed (exit {code})") in log


@pytest.mark.parametrize("kind", ["slurm", "pbs"])
def test_flow_chain_trains_then_samples(kind, standin):
    """Job 1: train stopped (3); job 2: train completes (0), sample stopped (3) in the same job;
    job 3: the training is complete (not launched again), sample completes."""
    env = first_env(kind, standin, LQCDFLOW_COMMANDS="train sample")
    assert run_jobs(kind, standin, env, plan=[3, 0, 3, 0]) == [0, 0, 0]
    commands = [re.fullmatch(r"launch -n 2 lqcdflow (\w+) run\.toml --restart auto "
                             r"--walltime \d+", line).group(1) for line in calls(standin)]
    assert commands == ["train", "train", "sample", "sample"]
    log = log_text(standin)
    assert log.count("] segment ") == 3 and log.count("lqcdflow train sample run.toml") == 3
    assert log.count("lqcdflow train: complete") == 1  # job 3
    assert "resubmitted as job 2" in log and "resubmitted as job 3" in log
    assert log.count("chain complete") == 1


@pytest.mark.parametrize("commands", ["train,sample", "sample trian", " "])
def test_unknown_commands_are_bad_input(commands, standin):
    env = first_env("slurm", standin, LQCDFLOW_COMMANDS=commands)
    assert run_jobs("slurm", standin, env, plan=[0]) == [2]
    assert calls(standin) == [] and submissions(standin) == []
    log = log_text(standin)
    assert (f'LQCDFLOW_COMMANDS="{commands}" is not a list of the lqcdflow commands run, '
            "train and sample") in log
    assert "bad input (exit 2)" in log


def test_launcher_exit_0_of_an_unfinished_training_is_resubmitted(standin):
    env = first_env("slurm", standin, LQCDFLOW_COMMANDS="train sample")
    assert run_jobs("slurm", standin, env, plan=["signal:0", 0, 0], signals={1: "USR1"}) \
        == [0, 0]
    log = log_text(standin)
    assert "lqcdflow status says train is not complete: treated as exit 3" in log
    assert [line.split()[4] for line in calls(standin) if line.startswith("launch")] == \
        ["train", "train", "sample"]
    assert log.count("chain complete") == 1


@pytest.mark.parametrize("kind", ["slurm", "pbs"])
def test_failure_limit_counts_segments_without_progress(kind, standin):
    """Progress resets the count: stall, progress, stall, stall reaches a limit of 2."""
    env = first_env(kind, standin, LQCDFLOW_MAX_FAILURES="2")
    assert run_jobs(kind, standin, env, plan=["stall:3", 3, "stall:3", "stall:3"]) \
        == [0, 0, 0, 3]
    assert [e["LQCDFLOW_FAILURES"] for e in queued_envs(standin)] == ["1", "0", "1"]
    log = log_text(standin)
    assert log.count("no progress in this segment (1 of at most 2 in a row)") == 2
    assert "no progress in 2 segments in a row (LQCDFLOW_MAX_FAILURES): not resubmitted" in log


@pytest.mark.parametrize("kind, sig, exit_code", [
    ("slurm", "USR1", 3), ("pbs", "TERM", 3), ("pbs", "INT", 3),
    ("slurm", "USR1", 0)])  # mpiexec (Hydra) may report 0 after a forwarded signal
def test_signal_is_forwarded_as_usr1_and_the_job_resubmits(kind, sig, exit_code, standin):
    statuses = run_jobs(kind, standin, first_env(kind, standin),
                        plan=[f"signal:{exit_code}", 0], signals={1: sig})
    assert statuses == [0, 0]
    assert "lqcdflow got USR1" in calls(standin)
    log = log_text(standin)
    assert f"received SIG{sig}" in log and "resubmitted as job 2" in log
    assert ("lqcdflow status says run is not complete" in log) == (exit_code == 0)
    assert log.count("chain complete") == 1


@pytest.mark.parametrize("call", [1, 2])
def test_a_signal_while_status_runs_is_logged_and_stops_the_segment(call, standin):
    """Job 1 is signalled during its first `lqcdflow status` (the progress before the run)
    or its second (`lqcdflow status >/dev/null`: the trap runs with the shell's output
    redirected): the line still reaches the log, and lqcdflow is not launched."""
    env = first_env("slurm", standin, STANDIN_SLOW_STATUS=str(call))
    assert run_jobs("slurm", standin, env, plan=[0], signals={1: "USR1"}, when="in-status") \
        == [0, 0]
    log = log_text(standin)
    assert log.count("received SIGUSR1: asking lqcdflow to checkpoint and stop") == 1
    assert len(calls(standin)) == 1 and "resubmitted as job 2" in log
    assert log.count("chain complete") == 1


@pytest.mark.parametrize("kind, sig", [("slurm", "USR1"), ("pbs", "SEGV"), ("slurm", "KILL")])
def test_ranks_ended_by_a_signal_continue_from_the_checkpoint(kind, sig, standin):
    """A signal that ends the ranks before their handlers are set (or a crash, or the OOM
    killer): the newest checkpoint decides, and the chain goes on."""
    assert run_jobs(kind, standin, first_env(kind, standin), plan=[f"die:{sig}", 0]) == [0, 0]
    log = log_text(standin)
    code = 128 + getattr(signal, "SIG" + sig)
    assert f"lqcdflow run was ended by a signal (exit {code}): continuing from its newest " \
        "checkpoint" in log
    assert "no progress in this segment (1 of at most 3 in a row)" in log
    assert log.count("chain complete") == 1


def test_ranks_that_do_not_stop_after_a_signal_are_ended(standin):
    """LQCDFLOW_STOP_GRACE after the forwarded signal, the launcher is ended (SIGTERM) and the
    chain continues from its newest checkpoint."""
    env = first_env("slurm", standin, LQCDFLOW_STOP_GRACE="2")
    started = time.monotonic()
    assert run_jobs("slurm", standin, env, plan=["hang", 0], signals={1: "USR1"}) == [0, 0]
    assert time.monotonic() - started < 25
    log = log_text(standin)
    assert "lqcdflow has not stopped 2 s (LQCDFLOW_STOP_GRACE) after the signal" in log
    assert "lqcdflow run was ended by a signal (exit 143)" in log
    assert log.count("chain complete") == 1


def test_a_signal_after_the_chain_completed_changes_nothing(standin):
    env = first_env("slurm", standin, LQCDFLOW_COMMANDS="train sample")
    assert run_jobs("slurm", standin, env, plan=["complete-die:USR1", 0]) == [0]
    log = log_text(standin)
    assert "the launcher exited 138, but lqcdflow train is complete (lqcdflow status)" in log
    assert "chain complete" in log and submissions(standin) == []


@pytest.mark.parametrize("kind", ["slurm", "pbs"])
def test_a_stop_request_ends_the_chain(kind, standin):
    """`lqcdflow stop` while job 1 runs: no resubmission; a resubmitted job that finds the
    request does not launch; a new submission withdraws it and runs."""
    work = standin.parent / "work"
    assert run_jobs(kind, standin, first_env(kind, standin), plan=["request:3"]) == [0]
    assert submissions(standin) == []
    assert "stopped by request (run.toml.stop: stop requested by lqcdflow stop" in \
        log_text(standin)
    resubmitted = first_env(kind, standin, LQCDFLOW_RESUBMIT_COUNT="4")
    assert run_jobs(kind, standin, resubmitted, plan=[0]) == [0]
    assert len(calls(standin)) == 1 and (work / "run.toml.stop").exists()
    assert "not launched, not resubmitted; to resume, submit this script again" in \
        log_text(standin)
    assert run_jobs(kind, standin, first_env(kind, standin), plan=[0]) == [0]
    assert len(calls(standin)) == 2 and not (work / "run.toml.stop").exists()
    log = log_text(standin)
    assert "a new chain: the stop request run.toml.stop is withdrawn" in log
    assert log.count("chain complete") == 1


@pytest.mark.parametrize("reason, resubmitted", [("None", False), ("TimeLimit", True)])
def test_slurm_cancel_is_not_resubmitted(reason, resubmitted, standin):
    """scancel and the time limit both send SIGTERM; Slurm's Reason tells them apart."""
    env = first_env("slurm", standin, STANDIN_STATE="COMPLETING", STANDIN_REASON=reason)
    statuses = run_jobs("slurm", standin, env, plan=["signal:3", 0], signals={1: "TERM"})
    assert statuses == ([0, 0] if resubmitted else [0])
    log = log_text(standin)
    assert ("cancelled: the checkpoint is written, not resubmitted" in log) != resubmitted
    assert ("resubmitted as job 2" in log) == resubmitted


@pytest.mark.parametrize("kind", ["slurm", "pbs"])
def test_a_copied_and_edited_script_works_from_another_directory(kind, standin, tmp_path):
    copy = tmp_path / "elsewhere" / f"my-{kind}.job"
    copy.parent.mkdir()
    copy.write_text(SCRIPTS[kind].read_text().replace("--ntasks=2", "--ntasks=1")
                    .replace("walltime=01:00:00", "walltime=00:20:00"))
    env = first_env(kind, standin, script=copy)
    assert run_jobs(kind, standin, env, plan=[3, 0]) == [0, 0]
    assert submissions(standin)[0][-1] == str(copy)
    assert log_text(standin).count("chain complete") == 1


@pytest.mark.parametrize("kind", ["slurm", "pbs"])
def test_no_lqcdflow_in_the_environment_is_one_line(kind, standin):
    env = first_env(kind, standin, PATH=f"{standin / 'bin'}:/usr/bin:/bin")
    assert run_jobs(kind, standin, env, plan=[0]) == [2]
    assert f"lqcdflow.{'sbatch' if kind == 'slurm' else 'pbs'}: python3 cannot import " \
        "lqcdflow (LQCDFLOW_VENV=): set LQCDFLOW_VENV" in log_text(standin, kind)
    assert calls(standin) == []


def test_slurm_walltime_fallback_when_squeue_cannot_tell(standin):
    env = first_env("slurm", standin, STANDIN_TIMELEFT="UNLIMITED", LQCDFLOW_WALLTIME="500")
    assert run_jobs("slurm", standin, env, plan=[0]) == [0]
    walltime = int(calls(standin)[0].rsplit(" ", 1)[1])
    assert 490 <= walltime <= 500
    env = first_env("slurm", standin, STANDIN_TIMELEFT="UNLIMITED")
    (standin / "calls").unlink()
    (standin / "complete-run").unlink()  # a fresh chain again
    assert run_jobs("slurm", standin, env, plan=[0]) == [0]
    assert calls(standin)[0].endswith("--walltime 0")  # no limit


def test_pbs_walltime_from_pbs_walltime(standin):
    env = first_env("pbs", standin, PBS_WALLTIME="7200")
    assert run_jobs("pbs", standin, env, plan=[0]) == [0]
    assert 7190 <= int(calls(standin)[0].rsplit(" ", 1)[1]) <= 7200


def test_pbs_needs_the_script_path(standin):
    env = first_env("pbs", standin)
    del env["LQCDFLOW_JOB_SCRIPT"]
    assert run_jobs("pbs", standin, env, plan=[0]) == [2]
    assert "LQCDFLOW_JOB_SCRIPT is not set" in log_text(standin)
    assert calls(standin) == []


# ------------------------------------------------------------------- real Slurm, end to end

# The shared test run file (tests/runs.py), on 8x8 with 8 steps, checkpoints every 10.
JOB_RUN = {"shape = [8, 4]": "shape = [8, 8]", "n_steps = 4": "n_steps = 8",
           "progress_every = 10": "progress_every = 100"}
N_TRAJECTORIES = 1000
# About 10 s each on an idle 2-core machine; the bounds leave room for a loaded one, and keep
# the whole end-to-end part (reference + 2 chains) under 4 minutes.
REFERENCE_TIMEOUT, CHAIN_TIMEOUT = 60, 85


@pytest.fixture(scope="module")
def local_slurm(tmp_path_factory):
    """A one-node Slurm on localhost, stopped (jobs cancelled) at the end whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("the local Slurm needs root (apt-get, slurmctld and slurmd as root)")
    state = tmp_path_factory.mktemp("slurm-state")
    env = clean_environ(LQCDFLOW_SLURM_STATE=str(state))
    tool = str(REPO / "tools" / "slurm_local.sh")
    try:
        start = subprocess.run(["bash", tool, "start"], env=env, capture_output=True, text=True,
                               timeout=600)
        if start.returncode != 0 and shutil.which("slurmctld") is None:
            pytest.skip(f"cannot install Slurm: {start.stderr.strip()[-500:]}")
        logs = "".join(p.read_text() for p in sorted(state.glob("*.log")))
        assert start.returncode == 0, start.stderr + logs
        env["SLURM_CONF"] = str(state / "slurm.conf")
        yield env
    finally:
        subprocess.run(["bash", tool, "stop"], env=env, timeout=120)


def uninterrupted_chain(work, n_trajectories):
    """The series of the uninterrupted chain: one `lqcdflow run` on 2 ranks in ``work``."""
    work.mkdir(exist_ok=True)
    write_run_file(work / "ref.toml", n_trajectories=n_trajectories, every=10, **JOB_RUN)
    result = subprocess.run(["mpiexec", "-n", "2", sys.executable, "-m", "lqcdflow", "run",
                             "-q", "ref.toml", "--restart", "never"], cwd=work,
                            capture_output=True, text=True, timeout=REFERENCE_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    return series(work / "ref.h5")


@pytest.fixture(scope="module")
def reference_chain(tmp_path_factory):
    return uninterrupted_chain(tmp_path_factory.mktemp("reference"), N_TRAJECTORIES)


class SlurmChain:
    """A chain submitted with ``script`` (default: the repository's sbatch script) from
    ``work`` with ``env``, given ``timeout`` seconds in all: its log (``log`` in ``work``),
    its jobs, and the waits of a test."""

    def __init__(self, env, work, timeout, script=SCRIPTS["slurm"], log="lqcdflow.log"):
        self.env, self.work, self.script, self.log = env, work, script, work / log
        self.deadline = time.monotonic() + timeout
        self.submit()

    def submit(self):
        """Submit the script (again: a user resuming the chain by hand); the job's id."""
        submit = subprocess.run(["sbatch", "--parsable", str(self.script)], cwd=self.work,
                                env=self.env, capture_output=True, text=True, timeout=30)
        assert submit.returncode == 0, submit.stderr
        return submit.stdout.strip()

    def text(self):
        return self.log.read_text() if self.log.exists() else ""

    def segments(self):
        """The log of each job, from its "segment" line on."""
        return re.split(r"^(?=\[lqcdflow-job [^]]*\] segment )", self.text(), flags=re.M)[1:]

    def squeue(self):
        return subprocess.run(["squeue", "-h", "-o", "%i %T %r"], env=self.env,
                              capture_output=True, text=True, timeout=30).stdout.strip()

    def running(self):
        """The ids of the running jobs."""
        return [line.split()[0] for line in self.squeue().splitlines()
                if line.split()[1] == "RUNNING"]

    def wait(self, predicate, what):
        return wait_for(predicate, self.deadline - time.monotonic(), what,
                        lambda: f"squeue: {self.squeue()}\nlog:\n{self.text()}")

    def job_of(self, index, ready):
        """The id of the job of segment ``index`` (0: the first), once its log satisfies
        ``ready``."""
        segment = self.wait(lambda: len(self.segments()) == index + 1
                            and ready(self.segments()[index]) and self.segments()[index],
                            f"progress in segment {index + 1}")
        return re.match(r"\[lqcdflow-job [^]]* job (\d+)\]", segment).group(1)

    def cut(self, index, ready):
        """Once segment ``index`` satisfies ``ready(its log)``, send SIGUSR1 to that job's
        batch shell, and wait until the job has resubmitted itself."""
        job = self.job_of(index, ready)
        self.scancel("--batch", "--signal=USR1", job)
        self.wait(lambda: "resubmitted as job" in self.segments()[index],
                  f"job {job} to stop and resubmit")

    def scancel(self, *args, check=True):
        subprocess.run(["scancel", *args], env=self.env, check=check, timeout=30)

    def ended(self, index, outcome):
        """Wait until segment ``index`` logged ``outcome`` and no job runs or waits."""
        self.wait(lambda: len(self.segments()) > index and outcome in self.segments()[index],
                  f"segment {index + 1} to log {outcome!r}")
        self.wait(lambda: self.squeue() == "", "the job to end")

    def finish(self):
        """Wait until the chain is complete and its last job has ended."""
        self.wait(lambda: "chain complete" in self.text(), "the chain to complete")
        self.wait(lambda: self.squeue() == "", "the last job to end")


def job_venv():
    return sys.prefix if sys.prefix != sys.base_prefix else ""


def test_srun_without_mpi_starts_copies_that_are_refused(local_slurm, tmp_path):
    """``srun --mpi=none -n 2`` starts two one-rank copies: each refuses in one line before it
    writes anything (a real Slurm step sets SLURM_STEP_NUM_TASKS)."""
    write_run_file(tmp_path / "run.toml", n_trajectories=10, **JOB_RUN)
    result = subprocess.run(["srun", "--mpi=none", "-n", "2", sys.executable, "-m", "lqcdflow",
                             "run", "-q", "run.toml"], cwd=tmp_path, env=local_slurm,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    refusals = [line for line in result.stderr.splitlines()
                if line.startswith("lqcdflow: error: Slurm started 2 tasks")]
    assert len(refusals) == 2, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.toml"]


@pytest.mark.parametrize("launcher", ["srun", "mpiexec"])
def test_slurm_chain_cut_twice_by_signals_equals_uninterrupted_chain(
        local_slurm, reference_chain, launcher, tmp_path):
    write_run_file(tmp_path / "run.toml", n_trajectories=N_TRAJECTORIES, every=10, **JOB_RUN)
    env = dict(local_slurm, LQCDFLOW_RUN_FILE="run.toml", LQCDFLOW_VENV=job_venv(),
               LQCDFLOW_LAUNCHER=launcher)
    started = time.monotonic()
    chain = SlurmChain(env, tmp_path, CHAIN_TIMEOUT)
    # Cut segment 1 after its first progress line, segment 2 after its second one.
    chain.cut(0, lambda segment: segment.count("\ntraj ") >= 1)
    chain.cut(1, lambda segment: segment.count("\ntraj ") >= 2)
    chain.finish()
    elapsed = time.monotonic() - started

    final = chain.text()
    assert len(chain.segments()) == 3, final
    assert final.count("received SIGUSR1") == 2
    stops = [int(t) for t in re.findall(r"stopped at trajectory (\d+) \(signal SIGUSR1\)", final)]
    assert len(stops) == 2 and 0 < stops[0] < stops[1] < N_TRAJECTORIES, final
    assert final.count("continuing from checkpoint") == 2
    result = series(tmp_path / "run.h5")
    for name in result:
        assert result[name] == reference_chain[name], f"{name} differs from the uninterrupted chain"
    print(f"{launcher}: chain cut at trajectories {stops}, completed in {elapsed:.1f} s")


# Ten signals, each at a random instant of a job's life: from the moment the job is seen
# running (the batch shell starting) to SIGNAL_SPAN s later, past the start-up of lqcdflow
# (about 1 s), into its trajectories and checkpoints (the whole chain takes about 7 s),
# and after the chain ended (table, exit, resubmission). Half go to the batch shell (Slurm's
# warning), half to every process of the job (as at the time limit). The seed fixes the
# instants' draws, not where they land.
N_SIGNALS, SIGNAL_SPAN, SIGNALS_TIMEOUT = 10, 3.0, 150
SIGNALLED_TRAJECTORIES = 3000


def test_slurm_chain_signalled_at_random_instants_equals_uninterrupted_chain(
        local_slurm, tmp_path):
    rng = random.Random(15)
    reference = uninterrupted_chain(tmp_path / "reference", SIGNALLED_TRAJECTORIES)
    write_run_file(tmp_path / "run.toml", n_trajectories=SIGNALLED_TRAJECTORIES, every=10,
                   **JOB_RUN)
    env = dict(local_slurm, LQCDFLOW_RUN_FILE="run.toml", LQCDFLOW_VENV=job_venv(),
               LQCDFLOW_MAX_FAILURES="100",  # a signal during start-up is no failure here
               LQCDFLOW_STOP_GRACE="20")  # a stuck step (a rank lost at start-up) ends soon
    chain = SlurmChain(env, tmp_path, SIGNALS_TIMEOUT)
    seen, instants = set(), []
    while len(instants) < N_SIGNALS:
        job = chain.wait(lambda: "chain complete" in chain.text() or next(
            (j for j in chain.running() if j not in seen), None), "the next job to run")
        if job is True:
            break
        seen.add(job)
        delay, whom = rng.uniform(0, SIGNAL_SPAN), rng.choice(["--batch", "--full"])
        time.sleep(delay)
        chain.scancel(whom, "--signal=USR1", job, check=False)  # the job may have ended
        instants.append(f"{delay:.1f} s {whom[2:]}")
    chain.finish()

    final = chain.text()
    for word in ("failed", "bad input", "Traceback", "not resubmitted"):
        assert word not in final, final
    result = series(tmp_path / "run.h5")
    for name in result:
        assert result[name] == reference[name], f"{name} differs from the uninterrupted chain"
    outcomes = [[line.split("] ", 1)[1] for line in segment.splitlines()[1:]
                 if line.startswith("[lqcdflow-job ") and "lqcdflow run: srun" not in line]
                for segment in chain.segments()]
    print(f"signals at {instants}; segments: {outcomes}")


def test_slurm_chain_stopped_cancelled_and_resumed_with_a_copied_script(
        local_slurm, reference_chain, tmp_path):
    """A user's copy of the sbatch script, edited, in another directory: `lqcdflow stop` ends
    the chain (no resubmission); submitted again it runs until `scancel` ends it (no
    resubmission); submitted again it completes, equal to the uninterrupted chain."""
    scripts, work = tmp_path / "my-scripts", tmp_path / "work"
    scripts.mkdir()
    work.mkdir()
    copy = scripts / "hmc.sbatch"
    copy.write_text(SCRIPTS["slurm"].read_text().replace("--job-name=lqcdflow",
                                                         "--job-name=hmc"))
    write_run_file(work / "run.toml", n_trajectories=N_TRAJECTORIES, every=10, **JOB_RUN)
    env = dict(local_slurm, LQCDFLOW_RUN_FILE="run.toml", LQCDFLOW_VENV=job_venv())
    chain = SlurmChain(env, work, STOP_TIMEOUT, script=copy, log="hmc.log")

    chain.job_of(0, lambda segment: "\ntraj " in segment)
    stop = subprocess.run([sys.executable, "-m", "lqcdflow", "stop", "run.toml"], cwd=work,
                          env=env, capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    chain.ended(0, "stopped by request (run.toml.stop: stop requested by lqcdflow stop")
    assert re.search(r"stopped at trajectory \d+ \(stop requested in run.toml.stop\)",
                     chain.segments()[0])

    chain.submit()
    job = chain.job_of(1, lambda segment: "\ntraj " in segment)
    assert "the stop request run.toml.stop is withdrawn" in chain.segments()[1]
    chain.scancel(job)
    chain.ended(1, "cancelled: the checkpoint is written, not resubmitted")
    # scancel signals the ranks and srun alike, and srun answers SIGTERM by killing its step: the
    # ranks either stop with a checkpoint first (on the SIGTERM, or on the SIGUSR1 the job
    # script forwards when it gets its own SIGTERM) or are killed, and then the newest periodic
    # checkpoint is where the chain continues (which race was won varies with the load).
    assert re.search(r"stopped at trajectory \d+ \(signal SIG(TERM|USR1)\)|lqcdflow run was "
                     r"ended by a signal \(exit \d+\): continuing from its newest checkpoint",
                     chain.segments()[1]), chain.segments()[1]

    chain.submit()
    chain.finish()
    assert len(chain.segments()) == 3
    assert chain.text().count("continuing from checkpoint") == 2
    result = series(work / "run.h5")
    for name in result:
        assert result[name] == reference_chain[name], f"{name} differs from the uninterrupted chain"


STOP_TIMEOUT = 90
# A chain of about 70 s of trajectories (3 ms each with the array kernels of the shared run
# file: the compiled ones would finish it in one job) on one rank, under a time limit of one
# minute set with SBATCH_TIMELIMIT (which the resubmissions inherit): each job stops by itself
# before the limit, and two complete it. The uninterrupted chain runs meanwhile, on the other
# core.
SHORT_RUN = {"shape = [8, 4]": "shape = [32, 32]", "n_steps = 4": "n_steps = 16",
             "progress_every = 10": "progress_every = 1000"}
# At least two one-minute jobs at the fastest rate seen (2 ms per trajectory on a quiet
# machine: 22000 trajectories once fitted into one job); the timeout covers a loaded machine.
SHORT_TRAJECTORIES, SHORT_TIMEOUT = 40000, 420


def test_slurm_chain_under_a_one_minute_limit_completes(local_slurm, tmp_path):
    reference, work = tmp_path / "reference", tmp_path / "work"
    for directory in (reference, work):
        directory.mkdir()
        write_run_file(directory / "run.toml", n_trajectories=SHORT_TRAJECTORIES, every=500,
                       **SHORT_RUN)
    uninterrupted = subprocess.Popen([sys.executable, "-m", "lqcdflow", "run", "-q",
                                      "run.toml"], cwd=reference, stderr=subprocess.PIPE,
                                     text=True)
    try:
        env = dict(local_slurm, LQCDFLOW_RUN_FILE="run.toml", LQCDFLOW_VENV=job_venv(),
                   LQCDFLOW_RANKS="1", SBATCH_TIMELIMIT="1", OMP_NUM_THREADS="1")
        chain = SlurmChain(env, work, SHORT_TIMEOUT)
        chain.finish()
        assert uninterrupted.wait(timeout=SHORT_TIMEOUT) == 0, uninterrupted.stderr.read()
    finally:
        uninterrupted.kill()
    final = chain.text()
    assert "DUE TO TIME LIMIT" not in final and "received SIG" not in final, final
    stops = re.findall(r"stopped at trajectory (\d+) \(walltime: (\d+) s of (\d+) s used", final)
    assert len(stops) == len(chain.segments()) - 1 >= 1, final
    assert all(int(total) <= 60 for _, _, total in stops), stops
    result = series(work / "run.h5")
    assert result == series(reference / "run.h5")
    print(f"one-minute limit: {len(chain.segments())} jobs, stops {stops}")


# A 4x4 flow of 2 small layers: 300 training steps of about 10 ms, then 100 proposals.
FLOW_JOB_RUN_FILE = """
[lattice]
shape = [4, 4]

[theory]
form = "standard"
m2 = -4.0
lambda = 8.0

[sampler]
algorithm = "nmcmc"
n_trajectories = 100
batch = 50

[flow]
coupling = "affine"
n_layers = 2
hidden = [4]
batch = 8
steps = 300
learning_rate = 0.01
progress_every = 20

[output]
file = "flow.h5"

[run]
seed = 11
"""
FLOW_STEPS = 300
# About 35 s on the shared, loaded 2-core machine (3 launches of lqcdflow, the table at the end).
FLOW_CHAIN_TIMEOUT = 90


def datasets(path):
    """{name: bytes} of every dataset in an HDF5 file."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()].tobytes())
                     if isinstance(obj, h5py.Dataset) else None)
    return out


def test_slurm_flow_trains_then_samples_across_a_resubmission(local_slurm, tmp_path,
                                                              monkeypatch):
    """LQCDFLOW_COMMANDS="train sample" on 1 rank (srun): the first job is cut by SIGUSR1
    after its first training progress line; the second continues the training and then
    samples in the same job. The flow state and the ensemble equal, bit for bit, those of
    `lqcdflow train` and `lqcdflow sample` run uninterrupted (in this process: one start-up
    of torch less)."""
    from lqcdflow.cli import main

    reference, work = tmp_path / "reference", tmp_path / "job"
    for directory in (reference, work):
        directory.mkdir()
        (directory / "flow.toml").write_text(FLOW_JOB_RUN_FILE)
    with monkeypatch.context() as patch:
        patch.chdir(reference)
        assert main(["train", "-q", "flow.toml"]) == 0
        assert main(["sample", "-q", "flow.toml"]) == 0

    env = dict(local_slurm, LQCDFLOW_RUN_FILE="flow.toml", LQCDFLOW_COMMANDS="train sample",
               LQCDFLOW_RANKS="1", LQCDFLOW_VENV=job_venv(), OMP_NUM_THREADS="1")
    started = time.monotonic()
    chain = SlurmChain(env, work, FLOW_CHAIN_TIMEOUT)
    chain.cut(0, lambda segment: "\nstep " in segment)
    chain.finish()
    elapsed = time.monotonic() - started

    final = chain.text()
    assert len(chain.segments()) == 2, final
    stops = re.findall(rf"stopped at step (\d+) of {FLOW_STEPS} \(signal SIGUSR1\)", final)
    assert len(stops) == 1 and 0 < int(stops[0]) < FLOW_STEPS, final
    second = chain.segments()[1]
    assert f"continuing training from flow.flow.h5 at step {stops[0]}" in second
    assert f"training complete: step {FLOW_STEPS} of {FLOW_STEPS}" in second
    assert "lqcdflow sample: " in second and "flow chain: acceptance" in second
    for name in ("flow.flow.h5", "flow.h5"):
        assert datasets(work / name) == datasets(reference / name), f"{name} differs"
    print(f"flow: training cut at step {stops[0]}, chain completed in {elapsed:.1f} s")
