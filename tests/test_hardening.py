"""Nonsense in must stop at the door (issue 10): run files that are not run files, paths that
cannot be written, lattices that do not fit, diverging chains and trainings, damaged flow
states, stops under -q and signals during set-up; each with its one-line message and exit
code, and nothing left behind that blocks the corrected rerun."""

import math
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from mpi4py import MPI

from lqcdflow.config import ConfigError
from lqcdflow.mc.driver import DivergenceError, run_chain
from lqcdflow.mc.hmc import HMC, ChainState, TrajectoryInfo, memory_needed, trajectory_peak
from lqcdflow.mc.integrators import SCHEMES
from lqcdflow.mc.stop import SetupInterrupted, StopRule, StopSignals
from lqcdflow.parallel import Lattice, memory
from lqcdflow.parallel.comm import guarded
from lqcdflow.rng import CounterRNG
from lqcdflow.theories.phi4 import Phi4, Phi4Couplings
from lqcdflow.theories.sun import SUN
from lqcdflow.theories.u1 import U1
from runs import TIMEOUT, command, flow_run, lqcdflow, one_line_error, write_run_file


def listing(directory):
    return sorted(p.name for p in directory.iterdir())


# --------------------------------------------------------------------------- run files
def test_a_byte_order_mark_is_dropped(tmp_path):
    run = write_run_file(tmp_path / "b.toml", n_trajectories=10)
    run.write_bytes(b"\xef\xbb\xbf" + run.read_bytes())
    result = lqcdflow(["run", "-q", str(run)])
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("content, message", [
    ("x = " + "[" * 5000 + "]" * 5000 + "\n", "nests arrays or tables too deeply"),
    (b"\x89HDF\r\n\x1a\n" + bytes(100), "is an HDF5 file, not a TOML run file"),
    (b"\xff\xfe[lattice]", "is not UTF-8 text (byte 0)"),
    ("# " + "x" * (1 << 20) + "\n", "is larger than 1048576 bytes"),
])
def test_files_that_are_no_run_files(tmp_path, content, message):
    run = tmp_path / "bad.toml"
    (run.write_bytes if isinstance(content, bytes) else run.write_text)(content)
    one_line_error(lqcdflow(["run", str(run)]), message)
    assert listing(tmp_path) == ["bad.toml"]


def test_a_directory_is_no_run_file(tmp_path):
    one_line_error(lqcdflow(["run", str(tmp_path)]), f"run file {tmp_path} is a directory")


@pytest.mark.parametrize("args", [[], ["frob"], ["run"], ["run", "x.toml", "--walltime", "-5"],
                                  ["run", "x.toml", "--walltime", "nan"], ["convert", "a", "b"],
                                  ["info"], ["analyze"]])
def test_command_line_errors_are_one_line(args):
    result = lqcdflow(args)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lqcdflow: error: "), result.stderr
    assert lines[0].endswith(" --help"), lines[0]


# --------------------------------------------------------------------------- paths
def _replace_paths(run, output=None, configurations=None, checkpoints=None):
    """``run`` with its output file, configurations file or checkpoint directory replaced."""
    text = run.read_text()
    if output is not None:
        text = text.replace(f'file = "{run.with_suffix(".h5")}"', f'file = "{output}"')
    if configurations is not None:
        text = text.replace("[output]", f'[output]\nconfigurations = "{configurations}"')
    if checkpoints is not None:
        text = text.replace(f'directory = "{run.with_suffix(".ck")}"',
                            f'directory = "{checkpoints}"')
    run.write_text(text)
    return run


@pytest.mark.parametrize("ranks", [None, 2])
@pytest.mark.parametrize("case, message", [
    ("output is a directory", "output file {tmp} is a directory"),
    ("output is the run file", "output file {run} is also the run file"),
    ("configurations are the output", "configuration file {out} is also the output file"),
    ("output in a missing directory", "the directory {tmp}/no of output file"),
    ("checkpoint directory is a file", "checkpoint directory {run} is a file"),
    ("checkpoint directory under a file", "cannot make checkpoint directory {run}/ck"),
    ("checkpoint directory read-only", "cannot write checkpoint directory /sys/kernel"),
    ("start file is the output", "output file {out} is also the start configuration"),
])
def test_paths_are_checked_before_anything_is_made(tmp_path, case, message, ranks):
    run = write_run_file(tmp_path / "p.toml", n_trajectories=10)
    out = run.with_suffix(".h5")
    changes = {
        "output is a directory": {"output": tmp_path},
        "output is the run file": {"output": run},
        "configurations are the output": {"configurations": out},
        "output in a missing directory": {"output": tmp_path / "no" / "x.h5"},
        "checkpoint directory is a file": {"checkpoints": run},
        "checkpoint directory under a file": {"checkpoints": f"{run}/ck"},
        "checkpoint directory read-only": {"checkpoints": "/sys/kernel"},
    }.get(case, {})
    _replace_paths(run, **changes)
    if case == "start file is the output":
        run.write_text(run.read_text().replace('start = "hot"',
                                               f'start = "file"\nstart_file = "{out}"'))
    before = listing(tmp_path)
    one_line_error(lqcdflow(["run", str(run)], ranks=ranks),
                   message.format(tmp=tmp_path, run=run, out=out))
    assert listing(tmp_path) == before


def test_measure_and_convert_check_their_targets(tmp_path):
    run = write_run_file(tmp_path / "m.toml", n_trajectories=10)
    one_line_error(lqcdflow(["measure", str(run), str(run)]),
                   f"output file {run} is also the run file")
    one_line_error(lqcdflow(["convert", str(run), str(tmp_path / "." / "m.toml"), "--to",
                             "ildg"]), "is also the source")
    assert listing(tmp_path) == ["m.toml"]


# --------------------------------------------------------------------------- memory
def _trajectory_peak(theory):
    """Bytes of the chain's field plus the tracemalloc peak of one HMC trajectory."""
    rng = CounterRNG(1)
    hmc = HMC.of(theory, SCHEMES["omelyan2"](), 2, 1.0, rng)
    state = ChainState(theory.hot_start(rng))
    return state.field.nbytes + trajectory_peak(hmc, state)


@pytest.mark.parametrize("make, shape", [
    (lambda lat: Phi4(lat, Phi4Couplings.hopping(0.1, 0.1)), (16, 16)),
    (lambda lat: U1(lat, 1.0), (16, 16)),
    (lambda lat: SUN(lat, 3, 5.7), (4, 4, 4, 4)),
])
def test_the_hmc_memory_estimate_is_a_lower_bound(make, shape):
    """What a refusal quotes must be needed: the estimate stays below the measured bytes (and
    within a factor 4 of them, or it would refuse nothing)."""
    theory = make(Lattice(shape, comm=MPI.COMM_SELF))
    needed, measured = memory_needed(theory), _trajectory_peak(theory)
    assert measured / 4 < needed <= measured


def test_memory_check_refuses_with_the_numbers():
    lattice = Lattice((4, 4), comm=MPI.COMM_SELF)
    memory.check(lattice, 2**30, "x", available=2**31)
    with pytest.raises(ConfigError, match=r"^x on a 4x4 lattice over 1 rank\(s\) needs at "
                                          r"least 2 GiB per rank, 1 GiB are available on its "
                                          r"node, shared by 1 rank\(s\)"):
        memory.check(lattice, 2**31, "x", available=2**30)


@pytest.mark.parametrize("ranks", [None, 2])
def test_a_lattice_beyond_memory_is_refused_at_once(tmp_path, ranks):
    run = write_run_file(tmp_path / "big.toml", **{"shape = [8, 4]": "shape = [65536, 65536]"})
    result = lqcdflow(["run", str(run)], ranks=ranks)
    one_line_error(result, "HMC of phi4 on a 65536x65536 lattice over")
    assert "GiB per rank" in result.stderr and "use more nodes (ranks)" in result.stderr


def test_a_flow_beyond_memory_is_refused_at_once(tmp_path):
    run = flow_run(tmp_path / "f.toml", **{"shape = [4, 4]": "shape = [16384, 16384]"})
    one_line_error(lqcdflow(["train", str(run)]), "flow training with a batch of")
    one_line_error(lqcdflow(["sample", str(run)]), "flow sampling with a batch of")


# --------------------------------------------------------------------------- divergence
class _Scripted:
    """A sampler whose trajectories have the given Delta H."""

    def __init__(self, delta_hs):
        self.delta_hs = list(delta_hs)

    def step(self, state):
        t = state.trajectory + 1
        return ChainState(state.field, t), TrajectoryInfo(t, self.delta_hs[t - 1], False)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_delta_h_stops_the_chain_before_it_is_recorded(bad):
    recorded = []
    with pytest.raises(DivergenceError, match=f"^trajectory 3: Delta H = {bad}: the update "
                                              "diverged"):
        run_chain(_Scripted([0.1, 1e300, bad, 0.0]), ChainState(None), 4,
                  [lambda s, info: recorded.append(info.trajectory)])
    assert recorded == [1, 2]  # a huge finite Delta H is an ordinary rejection


def test_a_diverging_run_stops_loudly_and_the_corrected_rerun_starts(tmp_path):
    run = write_run_file(tmp_path / "d.toml", n_trajectories=10,
                         **{"n_steps = 4": "n_steps = 1\ntrajectory_length = 1e30"})
    one_line_error(lqcdflow(["run", "-q", str(run)]), "trajectory 1: Delta H = ")
    write_run_file(run, n_trajectories=10)  # the same output file, nothing committed in it
    assert lqcdflow(["run", "-q", str(run)]).returncode == 0


def test_a_diverging_training_step_changes_no_parameter():
    from lqcdflow.flows import FlowSpec
    from lqcdflow.flows.train import constant_lr, train_step

    lattice = Lattice((4, 4), comm=MPI.COMM_SELF)
    spec = FlowSpec(shape=(4, 4), n_layers=2, hidden=(4,), kernel_size=3, m2=-4.0, lam=6.0,
                    seed=1)
    flow = spec.build(lattice)
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-3)
    train_step(flow, optimizer, spec.target(lattice), 8, 0, constant_lr(1e-3))
    with torch.no_grad():
        next(flow.parameters())[...] = math.inf
    before = [p.detach().clone() for p in flow.parameters()]
    with pytest.raises(DivergenceError, match="^training step 1: loss = nan: the flow diverged"):
        train_step(flow, optimizer, spec.target(lattice), 8, 1, constant_lr(1e-3))
    assert all(torch.equal(a, b) for a, b in zip(before, flow.parameters()))


# --------------------------------------------------------------------------- flow states
def test_a_damaged_flow_state_is_refused_by_every_command(tmp_path):
    import h5py

    run = flow_run(tmp_path / "s.toml", n_trajectories=20, every=10)
    assert lqcdflow(["train", "-q", str(run)]).returncode == 0
    state = tmp_path / "s.flow.h5"
    with h5py.File(state, "r") as f:
        name = sorted(f["parameters"])[0]
        offset = f["parameters"][name].id.get_offset()
    data = bytearray(state.read_bytes())
    data[offset + 2] ^= 0x04
    state.write_bytes(data)
    for args in (["train", str(run)], ["sample", str(run)]):
        one_line_error(lqcdflow(args), f"flow state {state} is damaged (checksum mismatch)")
    info = lqcdflow(["info", str(state)])
    assert info.returncode == 1 and "CHECKSUM MISMATCH" in info.stdout
    assert state.read_bytes() == data


# --------------------------------------------------------------------------- stops
def test_a_quiet_run_still_says_why_it_stopped(tmp_path):
    run = write_run_file(tmp_path / "q.toml", n_trajectories=10)
    result = lqcdflow(["run", "-q", "--walltime", "0.001", str(run)])
    assert result.returncode == 3
    assert result.stderr.startswith("lqcdflow: stopped at trajectory 0 (walltime: "), result.stderr


def test_a_signal_during_set_up_ends_it_at_once():
    with StopSignals() as signals:
        with pytest.raises(SetupInterrupted, match="SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises long before
        os.kill(os.getpid(), signal.SIGUSR1)  # a second one must not interrupt the way out
        assert signals.received == "SIGUSR1"
    with StopSignals() as signals:
        rule = StopRule(MPI.COMM_SELF, signals)
        rule.setup_ends()
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.received == "SIGTERM" and rule.reason() == "signal SIGTERM"


def test_setup_interrupted_is_exit_3_with_one_line(capsys):
    def work():
        raise SetupInterrupted("SIGINT")
    assert guarded(work, MPI.COMM_SELF) == 3
    assert capsys.readouterr().err == ("lqcdflow: stopped by SIGINT during set-up, before "
                                       "anything was written; resubmit to run (exit code 3)\n")


def test_sigterm_while_reading_the_start_configuration(tmp_path):
    """The start file is a FIFO nobody writes: set-up blocks in open() until the signal."""
    fifo = tmp_path / "start.fifo"
    os.mkfifo(fifo)
    run = write_run_file(tmp_path / "f.toml", **{'start = "hot"':
                                                 f'start = "file"\nstart_file = "{fifo}"'})
    process = subprocess.Popen(command(["run", "-q", str(run)]), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until it waits for the FIFO's writer
        try:
            with open(f"/proc/{process.pid}/wchan") as f:
                if f.read() in ("wait_for_partner", "fifo_open"):
                    break
        except OSError:
            pass
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 3, err
    assert err == ("lqcdflow: stopped by SIGTERM during set-up, before anything was written; "
                   "resubmit to run (exit code 3)\n")
    assert not (tmp_path / "f.h5").exists()
    assert not list((tmp_path / "f.ck").iterdir())


# --------------------------------------------------------------------------- damaged files
def test_a_truncated_ensemble_is_unreadable_for_every_command(tmp_path):
    run = write_run_file(tmp_path / "t.toml", n_trajectories=20)
    assert lqcdflow(["run", "-q", str(run)]).returncode == 0
    out = tmp_path / "t.h5"
    size = out.stat().st_size
    os.truncate(out, size // 2)
    truncated = out.read_bytes()
    why = f"truncated: {size // 2} of {size} bytes"
    one_line_error(lqcdflow(["info", str(out)]), f"cannot read {out}: {why}")
    one_line_error(lqcdflow(["analyze", str(out)]), f"{out}: cannot read it ({why})")
    write_run_file(run, n_trajectories=40)
    one_line_error(lqcdflow(["run", str(run)]), f"output file {out} is unreadable ({why})")
    assert out.read_bytes() == truncated


def test_flipped_run_metadata_is_found(tmp_path):
    """The attributes (the run's couplings, which the analysis uses) are sealed by a hash."""
    import h5py

    run = write_run_file(tmp_path / "a.toml", n_trajectories=20)
    assert lqcdflow(["run", "-q", str(run)]).returncode == 0
    out = tmp_path / "a.h5"
    with h5py.File(out, "a") as f:
        f.attrs["theory.kappa"] = np.float64(0.25)  # what a flipped bit of 0.2 could read
    one_line_error(lqcdflow(["analyze", str(out)]), "attributes do not match their hash")
    result = lqcdflow(["info", str(out)])
    assert result.returncode == 1 and "ATTRIBUTES DAMAGED" in result.stdout
    write_run_file(run, n_trajectories=30)
    one_line_error(lqcdflow(["run", str(run)]), f"output file {out} is damaged")


# --------------------------------------------------------------------------- launchers
@pytest.mark.parametrize("ranks, tasks, refused", [
    (None, "2", True),   # srun --mpi=none -n 2: two one-rank copies
    (2, "4", True),
    (2, "2", False),     # srun --mpi=pmi2 -n 2
    (2, "1", False),     # mpiexec under Slurm: one task (Hydra's proxy) starts both ranks
])
def test_a_launch_that_duplicates_ranks_is_refused(tmp_path, monkeypatch, ranks, tasks,
                                                   refused):
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", tasks)
    run = write_run_file(tmp_path / "l.toml", n_trajectories=10)
    result = lqcdflow(["run", "-q", str(run)], ranks=ranks)
    if refused:
        one_line_error(result, f"Slurm started {tasks} tasks (SLURM_STEP_NUM_TASKS) but this "
                               "MPI job has")
        assert listing(tmp_path) == ["l.toml"]
    else:
        assert result.returncode == 0, result.stderr
