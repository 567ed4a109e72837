"""U(1) through the whole stack: ``lqcdflow run`` on 1, 2 and 4 ranks (bitwise equal),
restarts on other rank counts, configurations, ``info``, ``status`` and ``analyze``."""

import json
import signal

import h5py
import numpy as np
import pytest
from runs import U1_RUN_FILE, interrupted, lqcdflow, one_line_error, series, write_run_file

from lqcdflow.exitcodes import EXIT_RESUBMIT


def u1_run(path, n_trajectories=40, every=10, **replace):
    return write_run_file(path, n_trajectories, every, text=U1_RUN_FILE, **replace)


def fields(path):
    with h5py.File(str(path) + ".configs.h5", "r") as f:
        return f["configurations/theta"][()]


@pytest.mark.parametrize("ranks", [2, 4])
def test_u1_run_is_bitwise_identical_on_1_2_4_ranks(tmp_path, ranks):
    one, many = u1_run(tmp_path / "one.toml"), u1_run(tmp_path / "many.toml")
    result = lqcdflow(["run", str(one)])
    assert result.returncode == 0, result.stderr
    assert "U(1) Wilson gauge theory: beta = 1.5" in result.stdout
    assert "chi_t = <Q^2>/V" in result.stdout and "<cos theta_P>" in result.stdout
    result = lqcdflow(["run", "-q", str(many)], ranks=ranks)
    assert result.returncode == 0, result.stderr
    assert series(tmp_path / "one.h5") == series(tmp_path / "many.h5")
    assert fields(tmp_path / "one.h5").tobytes() == fields(tmp_path / "many.h5").tobytes()
    with h5py.File(tmp_path / "many.h5", "r") as f:
        assert f.attrs["theory.name"] == "u1" and f.attrs["field"] == "theta"
        assert f["observables/polyakov"].shape == (40, 2)
        assert f["observables/polyakov"].dtype == np.complex128
        q = f["observables/topological_charge"][()]
        assert np.array_equal(q, np.rint(q)) and len(set(q)) > 1  # integers, and Q moves
    assert fields(tmp_path / "one.h5").shape == (4, 8, 8, 2)


def test_u1_restarts_on_other_rank_counts_equal_the_uninterrupted_chain(tmp_path):
    whole = u1_run(tmp_path / "whole.toml", 40)
    parts = u1_run(tmp_path / "parts.toml", 20)
    assert lqcdflow(["run", "-q", str(whole)]).returncode == 0
    assert lqcdflow(["run", "-q", str(parts)], ranks=4).returncode == 0
    assert lqcdflow(["status", str(parts)]).returncode == 0
    parts.write_text(parts.read_text().replace("n_trajectories = 20", "n_trajectories = 40"))
    assert lqcdflow(["status", str(parts)]).returncode == 3
    result = lqcdflow(["run", str(parts)], ranks=2)
    assert result.returncode == 0, result.stderr
    assert "continuing from checkpoint at trajectory 20" in result.stdout
    assert series(tmp_path / "whole.h5") == series(tmp_path / "parts.h5")
    assert fields(tmp_path / "whole.h5").tobytes() == fields(tmp_path / "parts.h5").tobytes()
    info = lqcdflow(["info", str(tmp_path / "parts.h5"), str(tmp_path / "parts.h5.configs.h5"),
                     *map(str, sorted((tmp_path / "parts.ck").glob("checkpoint_*.h5")))])
    assert info.returncode == 0, info.stderr
    assert "all field checksums ok" in info.stdout and "4 of /configurations/theta" in info.stdout
    assert "state hash and field checksum ok" in info.stdout


def test_checkpoints_of_another_theory_are_another_runs(tmp_path):
    """A U(1) run file pointed at phi^4 checkpoints: refused as another run's, not skipped as
    damaged."""
    phi4 = write_run_file(tmp_path / "phi4.toml", 20, every=10)
    assert lqcdflow(["run", "-q", str(phi4)]).returncode == 0
    run = u1_run(tmp_path / "u1.toml", 30, **{f'directory = "{tmp_path / "u1.ck"}"':
                                              f'directory = "{tmp_path / "phi4.ck"}"'})
    one_line_error(lqcdflow(["run", str(run)]),
                   "belongs to another run: theory.name = 'phi4' there, 'u1' in the run file")


def test_u1_checkpoints_are_refused_with_another_beta(tmp_path):
    run = u1_run(tmp_path / "a.toml", 20)
    assert lqcdflow(["run", "-q", str(run)]).returncode == 0
    text = run.read_text().replace('name = "u1"\nbeta = 1.5', 'name = "u1"\nbeta = 1.6')
    run.write_text(text.replace("n_trajectories = 20", "n_trajectories = 30"))
    result = lqcdflow(["run", str(run)])
    assert result.returncode == 2
    assert "belongs to another run: theory.beta = 1.5 there, 1.6 in the run file" in result.stderr


def test_u1_analyze_reports_topology_and_plots_it(tmp_path):
    run = u1_run(tmp_path / "a.toml", 200, every=100)
    assert lqcdflow(["run", "-q", str(run)]).returncode == 0
    result = lqcdflow(["analyze", "--json", "--plot", str(tmp_path / "plots"),
                       str(tmp_path / "a.h5")])
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    rows = doc["observables"]
    assert {"plaquette", "topological_charge", "chi_t", "abs_polyakov_0", "abs_polyakov_1",
            "acceptance"} <= set(rows)
    assert doc["theory"]["name"] == "u1"
    assert 0 < rows["chi_t"]["value"] < 0.1 and rows["topological_charge"]["tau_int"] > 0
    written = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert written == ["autocorrelation.png", "histogram_topological_charge.png", "history.png"]
    assert not [n for n in doc["notes"] if "correlator" in n]  # U(1) measures none
    result = lqcdflow(["analyze", "-t", "auto", str(tmp_path / "a.h5")])
    assert result.returncode == 0, result.stderr
    assert "(detected)" in result.stdout


BAD_U1_RUN_FILES = [
    ({"beta = 1.5": "beta = -1.0"}, "[theory] beta = -1.0 is not allowed"),
    ({"beta = 1.5": "beta = 1.5\nkappa = 0.1"}, "[theory] unknown key 'kappa'"),
    ({'name = "u1"': 'name = "su7"'}, "[theory] name = 'su7' is not allowed"),
    ({"shape = [8, 8]": "shape = [8]"}, "needs a lattice of D >= 2"),
    ({"n_steps = 5": "n_steps = [5, 2]"}, "2 levels of steps for 1 force terms"),
    ({"[theory]\nname": "[theory]\nnamee"},
     "[theory] unknown key 'beta'; allowed: name, form, kappa, m2, lambda (theory 'phi4': "
     "[theory] name is not given)"),
]


@pytest.mark.parametrize("replace, message", BAD_U1_RUN_FILES)
def test_bad_u1_run_files_give_one_line_and_exit_2(tmp_path, replace, message):
    run = u1_run(tmp_path / "bad.toml", **replace)
    one_line_error(lqcdflow(["run", str(run)]), message)
    assert not (tmp_path / "bad.h5").exists()


def test_u1_walltime_stops_and_a_signal_resubmit_to_the_uninterrupted_chain(tmp_path):
    """The stop machinery is the theory's too: walltime stops (exit 3, checkpoint) and a
    SIGUSR1 through mpiexec, each resubmitted, give the uninterrupted U(1) chain bit for bit."""
    whole = u1_run(tmp_path / "whole.toml", 1000, every=1000)
    assert lqcdflow(["run", "-q", str(whole)]).returncode == 0
    # the array kernels of the shared run file: a start-up well inside the walltime of 0.5 s
    # (loading the compiled kernels takes ~0.7 s)
    run = u1_run(tmp_path / "cut.toml", 1000, every=1000,
                 **{"every = 1000": "every = 1000\nmargin = 0.1"})
    result = interrupted(["run", str(run)], signal.SIGUSR1, ranks=2)
    assert "signal SIGUSR1" in result.stdout, (result.stdout, result.stderr)
    assert lqcdflow(["status", str(run)]).returncode == EXIT_RESUBMIT
    stops = 0
    while (result := lqcdflow(["run", "-q", "--walltime", "0.5", str(run)])).returncode:
        assert result.returncode == EXIT_RESUBMIT, result.stderr
        stops += 1
        assert stops < 60
    assert stops >= 2
    assert series(tmp_path / "whole.h5") == series(tmp_path / "cut.h5")
    assert fields(tmp_path / "whole.h5").tobytes() == fields(tmp_path / "cut.h5").tobytes()
