"""`lqcdflow run` end to end: output, bitwise equality across rank counts, one-line errors,
and no hang when one rank fails. Every mpiexec run is bounded by a timeout."""

import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from runs import lqcdflow, one_line_error, series, write_run_file

def test_run_writes_ensemble_and_prints_progress_and_table(tmp_path):
    run_file = write_run_file(tmp_path / "a.toml")
    result = lqcdflow(["run", str(run_file)])
    assert result.returncode == 0, result.stderr
    assert "traj      10/30" in result.stdout and "ETA" in result.stdout
    assert "tau_int" in result.stdout and "chi" in result.stdout
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert f.attrs["format"] == "lqcdflow-ensemble"
        assert f.attrs["theory.kappa"] == 0.2 and list(f.attrs["lattice.shape"]) == [8, 4]
        assert "n_steps = 4" in f.attrs["run_file"]
        assert list(f["mc/trajectory"][:]) == list(range(1, 31))
        assert list(f["observables/trajectory"][:]) == list(range(2, 31, 2))
        assert f["observables/correlator"].shape == (15, 8)


@pytest.mark.parametrize("ranks", [2, 4])
def test_run_is_bitwise_identical_on_1_2_4_ranks(tmp_path, ranks):
    single = write_run_file(tmp_path / "one.toml")
    multi = write_run_file(tmp_path / "many.toml")
    assert lqcdflow(["run", "-q", str(single)], ranks=1).returncode == 0
    result = lqcdflow(["run", "-q", str(multi)], ranks=ranks)
    assert result.returncode == 0, result.stderr
    assert series(tmp_path / "one.h5") == series(tmp_path / "many.h5")
    with h5py.File(tmp_path / "many.h5", "r") as f:
        assert f.attrs["ranks"] == ranks


BAD_RUN_FILES = [
    ({"n_steps = 4": "n_steps = 4\nn_stepz = 3"}, "[sampler] unknown key 'n_stepz'"),
    ({"n_steps = 4": 'n_steps = "four"'}, "[sampler] n_steps = 'four' is not allowed"),
    ({"n_steps = 4": "n_steps = -4"}, "expected an integer > 0"),
    ({"kappa = 0.2": "kappa = true"}, "[theory] kappa = True is not allowed"),
    ({'form = "hopping"': 'form = "wilson"'}, "expected one of 'hopping', 'standard'"),
    ({"[run]": "[runn]"}, "unknown section [runn]"),
    ({"[lattice]\nshape = [8, 4]\n": ""}, "missing section [lattice]"),
    ({"shape = [8, 4]": "shape = [8, 4]\ngrid = [3, 1]"},
     "process grid [3, 1] has 3 ranks, the job has 1"),
    ({"shape = [8, 4]": "shape = [8, 4]\ngrid = [2, 1, 1]"}, "one entry per direction"),
    ({"lambda = 0.3": "lambda = 0.0", "kappa = 0.2": "kappa = 0.3"}, "unstable"),
    ({"kappa = 0.2": "m2 = 1.0"}, "missing key 'kappa'"),
    ({'integrator = "omelyan2"': 'integrator = "leapfrog"\nxi = 0.2'}, "only used by"),
    ({"seed = 7": "seed = 18446744073709551616"}, "[run] seed"),
    ({"n_steps = 4": "n_steps = 4 = 5"}, "is not valid TOML"),
    ({"kappa = 0.2": "kappa = nan"}, "[theory] kappa = nan is not allowed"),
    ({"kappa = 0.2": "kappa = 1e400"}, "[theory] kappa = inf is not allowed"),
    ({"lambda = 0.3": "lambda = -inf"}, "[theory] lambda = -inf is not allowed"),
    ({"n_steps = 4": "n_steps = 4\ntrajectory_length = inf"}, "trajectory_length = inf"),
    ({"n_trajectories = 30": "n_trajectories = 9223372036854775808"},
     "[sampler] n_trajectories = 9223372036854775808 is not allowed"),
    ({"seed = 7": "seed = -1"}, "[run] seed = -1 is not allowed"),
]


@pytest.mark.parametrize("replace, message", BAD_RUN_FILES)
def test_bad_run_files_give_one_line_and_exit_2(tmp_path, replace, message):
    run_file = write_run_file(tmp_path / "bad.toml", **replace)
    one_line_error(lqcdflow(["run", str(run_file)]), message)
    assert not (tmp_path / "bad.h5").exists()


def test_missing_run_file_and_bad_error_on_all_ranks(tmp_path):
    result = lqcdflow(["run", str(tmp_path / "nowhere.toml")], ranks=2)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"lqcdflow: error: run file {tmp_path / 'nowhere.toml'} not found"]
    run_file = write_run_file(tmp_path / "grid.toml", **{"shape = [8, 4]": "shape = [6, 3]"})
    result = lqcdflow(["run", str(run_file)], ranks=4)
    assert result.returncode == 2 and "cannot be split evenly over 4 ranks" in result.stderr


def test_existing_output_is_never_overwritten_by_default(tmp_path):
    run_file = write_run_file(tmp_path / "keep.toml")
    (tmp_path / "keep.h5").write_bytes(b"precious")
    result = lqcdflow(["run", str(run_file)], ranks=2)
    assert result.returncode == 2 and "exists" in result.stderr
    assert (tmp_path / "keep.h5").read_bytes() == b"precious"


def test_unwritable_output_directory(tmp_path):
    run_file = write_run_file(tmp_path / "x.toml")
    run_file.write_text(run_file.read_text().replace(str(tmp_path / "x.h5"),
                                                     str(tmp_path / "no" / "such" / "x.h5")))
    result = lqcdflow(["run", str(run_file)], ranks=2)
    assert result.returncode == 2 and "no/such of output file" in result.stderr
    assert "does not exist" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.toml"]  # checked before locking


def test_an_exception_on_one_rank_aborts_the_whole_job(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(textwrap.dedent("""
        from mpi4py import MPI
        from lqcdflow.parallel.comm import guarded

        def work():
            if MPI.COMM_WORLD.Get_rank() == 1:
                raise RuntimeError("rank one broke")
            MPI.COMM_WORLD.Barrier()  # would wait forever without the abort
            return 0

        raise SystemExit(guarded(work))
    """))
    result = subprocess.run(["mpiexec", "-n", "2", sys.executable, str(script)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "[rank 1/2]" in result.stderr and "rank one broke" in result.stderr


def test_version_and_help():
    result = lqcdflow(["--version"])
    assert result.returncode == 0 and result.stdout.strip()
    assert lqcdflow([]).returncode == 2
    assert np.all([word in lqcdflow(["run", "--help"]).stdout for word in ("run_file",)])


SERIAL_COMMANDS = [["status", "{run}"], ["stop", "{run}"], ["info", "{out}"], ["analyze", "{out}"]]


@pytest.mark.parametrize("args", SERIAL_COMMANDS)
def test_serial_commands_never_import_mpi(tmp_path, args):
    """status, stop, info and analyze work where MPI cannot even be imported (a login node): an
    import of mpi4py (which initialises MPI) would fail here."""
    run_file = write_run_file(tmp_path / "a.toml", n_trajectories=400, every=100)
    assert lqcdflow(["run", "-q", str(run_file)]).returncode == 0
    argv = [a.format(run=run_file, out=tmp_path / "a.h5") for a in args]
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "from lqcdflow.cli import main\n"
            f"sys.exit(main({argv!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "mpi4py" not in result.stderr


def test_a_chain_that_never_accepts_says_so_loudly(tmp_path):
    """MD with one step of 30 (Delta H ~ 10^3) never accepts: the progress line, the end of
    the run and the analysis each warn instead of printing a quiet table."""
    run_file = write_run_file(tmp_path / "stuck.toml", n_trajectories=220, every=100,
                              **{"n_steps = 4": "n_steps = 1\ntrajectory_length = 30.0",
                                 "measure_every = 2": "measure_every = 1"})
    result = lqcdflow(["run", str(run_file)])
    assert result.returncode == 0, result.stderr
    assert "acc  0.000" in result.stdout and "WARNING: nothing accepted yet" in result.stdout
    assert ("lqcdflow: warning: not one of the 220 trajectories was accepted"
            in result.stderr)
    result = lqcdflow(["analyze", str(tmp_path / "stuck.h5")])
    assert result.returncode == 0, result.stderr
    assert "warning: replica r0 accepted none of its 215 trajectories" in result.stdout


def test_nested_integrator_from_the_run_file(tmp_path):
    """n_steps = [4, 2]: the hopping force on the outer level, the local potential inside."""
    run_file = write_run_file(tmp_path / "nested.toml", **{"n_steps = 4": "n_steps = [4, 2]"})
    result = lqcdflow(["run", str(run_file)])
    assert result.returncode == 0, result.stderr
    assert "level 1 (hopping)" in result.stdout and "level 2 (potential)" in result.stdout
    assert "4 steps, 9 forces/traj" in result.stdout and "2 steps, 40 forces/traj" in result.stdout
    with h5py.File(tmp_path / "nested.h5", "r") as f:
        assert list(f.attrs["sampler.n_steps"]) == [4, 2]
        assert f["mc/accepted"][()].mean() > 0.5


def test_the_largest_seed_is_accepted_and_walltime_must_be_finite(tmp_path):
    """Seeds are unsigned 64-bit (2^64 - 1 runs and is stored); --walltime nan, inf or -5
    are refused by the command line with exit 2."""
    run_file = write_run_file(tmp_path / "seed.toml", n_trajectories=8, every=10,
                              **{"seed = 7": "seed = 18446744073709551615"})
    result = lqcdflow(["run", "-q", str(run_file)])
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "seed.h5", "r") as f:
        assert int(f.attrs["run.seed"]) == 2**64 - 1
    for value in ("nan", "inf", "-5"):
        result = lqcdflow(["run", "--walltime", value, str(run_file)])
        assert result.returncode == 2 and "argument --walltime: expected seconds >= 0" in \
            result.stderr


def test_example_run_files_are_valid():
    """Every run file in examples/ parses (the README's commands use them)."""
    from pathlib import Path

    from lqcdflow.config import parse

    examples = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.toml"))
    assert len(examples) >= 6
    for path in examples:
        parse(path.read_text(), str(path))
