"""SU(N) through the whole stack: ``lqcdflow run`` for SU(3) in 4D, restarts on other rank
counts bitwise equal to the uninterrupted chain, configurations, ``info`` and ``analyze``."""

import json

import h5py
import numpy as np
import pytest
from runs import SU3_RUN_FILE, U1_RUN_FILE, lqcdflow, one_line_error, series, write_run_file

def su3_run(path, n_trajectories=20, every=10, **replace):
    return write_run_file(path, n_trajectories, every, text=SU3_RUN_FILE, **replace)


def fields(path):
    with h5py.File(str(path) + ".configs.h5", "r") as f:
        return f["configurations/U"][()]


def test_su3_restarts_on_other_rank_counts_equal_the_uninterrupted_chain(tmp_path):
    whole = su3_run(tmp_path / "whole.toml", 20)
    parts = su3_run(tmp_path / "parts.toml", 10)
    result = lqcdflow(["run", str(whole)])
    assert result.returncode == 0, result.stderr
    assert "SU(3) Wilson gauge theory: beta = 5.7" in result.stdout
    assert "|UU^+-1| " in result.stdout and "<plaquette_spatial>" in result.stdout
    assert lqcdflow(["run", "-q", str(parts)], ranks=4).returncode == 0
    parts.write_text(parts.read_text().replace("n_trajectories = 10", "n_trajectories = 20"))
    result = lqcdflow(["run", str(parts)], ranks=2)
    assert result.returncode == 0, result.stderr
    assert "continuing from checkpoint at trajectory 10" in result.stdout
    assert series(tmp_path / "whole.h5") == series(tmp_path / "parts.h5")
    assert fields(tmp_path / "whole.h5").tobytes() == fields(tmp_path / "parts.h5").tobytes()
    configurations = fields(tmp_path / "whole.h5")
    assert configurations.shape == (2, 4, 4, 4, 4, 4, 3, 3)
    assert configurations.dtype == np.complex128
    with h5py.File(tmp_path / "parts.h5", "r") as f:
        assert f.attrs["theory.name"] == "su3" and f.attrs["field"] == "U"
        assert f["observables/polyakov"].shape == (20, 4)
        assert np.all(f["observables/unitarity"][()] < 1e-14)
    info = lqcdflow(["info", str(tmp_path / "parts.h5"), str(tmp_path / "parts.h5.configs.h5"),
                     *map(str, sorted((tmp_path / "parts.ck").glob("checkpoint_*.h5")))])
    assert info.returncode == 0, info.stderr
    assert "all field checksums ok" in info.stdout and "2 of /configurations/U" in info.stdout


def test_su2_in_2d_runs_analyzes_and_its_checkpoints_are_not_su3s(tmp_path):
    run = su3_run(tmp_path / "su2.toml", 120, 60, **{'name = "su3"\nbeta = 5.7':
                                                    'name = "su2"\nbeta = 2.0',
                                                    "shape = [4, 4, 4, 4]": "shape = [8, 8]"})
    assert lqcdflow(["run", "-q", str(run)], ranks=2).returncode == 0
    assert fields(tmp_path / "su2.h5").shape == (12, 8, 8, 2, 2, 2)
    result = lqcdflow(["analyze", "--json", str(tmp_path / "su2.h5")])
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["observables"]
    assert {"plaquette", "plaquette_temporal", "abs_polyakov_0", "abs_polyakov_1",
            "action_density", "acceptance"} <= set(rows)
    assert "plaquette_spatial" not in rows  # 2D: no spatial plane
    assert 0.3 < rows["plaquette"]["value"] < 0.6  # u_2(2) = I_2(2)/I_1(2) = 0.4331
    run.write_text(run.read_text().replace('name = "su2"', 'name = "su3"')
                   .replace("n_trajectories = 120", "n_trajectories = 130"))
    one_line_error(lqcdflow(["run", str(run)]),
                   "belongs to another run: theory.name = 'su2' there, 'su3' in the run file")


BAD_SU3_RUN_FILES = [
    ({"beta = 5.7": "beta = -1.0"}, "[theory] beta = -1.0 is not allowed"),
    ({"beta = 5.7": "beta = 5.7\nn = 3"}, "[theory] unknown key 'n'"),
    ({"shape = [4, 4, 4, 4]": "shape = [8]"}, "[theory] name = 'su3' needs a lattice of D >= 2"),
    ({"n_steps = 6": "n_steps = [6, 2]"}, "2 levels of steps for 1 force terms"),
]


@pytest.mark.parametrize("replace, message", BAD_SU3_RUN_FILES)
def test_bad_su3_run_files_give_one_line_and_exit_2(tmp_path, replace, message):
    run = su3_run(tmp_path / "bad.toml", **replace)
    one_line_error(lqcdflow(["run", str(run)]), message)
    assert not (tmp_path / "bad.h5").exists()


def test_measure_flows_stored_configurations_on_any_rank_count(tmp_path):
    """``lqcdflow measure`` with the Wilson flow switched on: the same numbers on 1 and 2
    ranks, equal to the library's flow of the stored configuration, and t0, w0 in its table;
    a run file of another beta is refused."""
    run = su3_run(tmp_path / "a.toml", 60, 30, **{"save_every = 10": "save_every = 4"})
    assert lqcdflow(["run", "-q", str(run)]).returncode == 0
    flow = tmp_path / "flow.toml"
    flow.write_text(run.read_text().replace("beta = 5.7", "beta = 5.7\nflow_t_max = 1.0\n"
                                            "flow_epsilon = 0.05"))
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    result = lqcdflow(["measure", str(flow), str(one)])
    assert result.returncode == 0, result.stderr
    assert "measuring 15 configurations" in result.stdout and "t0/a^2 (clover E)" in result.stdout
    assert lqcdflow(["measure", "-q", str(flow), str(two)], ranks=2).returncode == 0
    assert series(one) == series(two)
    with h5py.File(one, "r") as f:
        assert f["observables/flow_E_clover"].shape == (15, 21)
        assert list(f["observables/trajectory"][()]) == list(range(4, 61, 4))
        first = f["observables/flow_E_plaquette"][0]
    with h5py.File(str(tmp_path / "a.h5") + ".configs.h5", "r") as f:
        plaquette = f["configurations/U"][0]
    from mpi4py import MPI

    from lqcdflow.parallel import Lattice
    from lqcdflow.theories import wilson_flow
    from lqcdflow.theories.sun import SUN
    theory = SUN(Lattice((4, 4, 4, 4), comm=MPI.COMM_SELF), 3, 5.7)
    points = wilson_flow.wilson_flow(theory, plaquette, 0.05, 20)
    assert [p.e_plaquette for p in points] == list(first)
    table = {" ".join(line.split()[:-5]): line.split()[-5:]
             for line in result.stdout.splitlines()}
    for label in ("t0/a^2 (clover E)", "w0/a (clover E)", "t0/a^2 (plaquette E)",
                  "<Q(t_max)>", "chi_t = <Q(t_max)^2>/V"):
        assert label in table, result.stdout
    t0, error = map(float, table["t0/a^2 (clover E)"][:2])
    assert 0.2 < t0 < 1.0 and 0 < error < t0
    other = tmp_path / "other.toml"
    other.write_text(flow.read_text().replace("beta = 5.7", "beta = 5.8"))
    one_line_error(lqcdflow(["measure", str(other), str(tmp_path / "x.h5")]),
                   "the configurations were made with theory.beta = 5.7, the run file says 5.8")
    one_line_error(lqcdflow(["measure", str(flow), str(one)]), "exists")
    one_line_error(lqcdflow(["measure", str(flow), str(tmp_path / "a.h5")]),
                   f"output file {tmp_path / 'a.h5'} is also the output file of the run; give "
                   "each its own path")


def ildg_payload(path):
    from lqcdflow.io import ildg

    record = next(r for r in ildg.records(path) if r.type == "ildg-binary-data")
    with open(path, "rb") as f:
        f.seek(record.offset)
        return f.read(record.length)


def test_convert_through_every_format_and_start_runs_from_ildg(tmp_path):
    """lqcdflow -> ILDG (1 rank) -> openQCD (2 ranks) -> lqcdflow (4 ranks) -> ILDG gives the
    same links; a run started from the ILDG file is the same chain on 1 and 2 ranks."""
    run = su3_run(tmp_path / "a.toml", 20)
    assert lqcdflow(["run", "-q", str(run)]).returncode == 0
    configs = str(tmp_path / "a.h5") + ".configs.h5"
    lime, oqcd = tmp_path / "a.lime", tmp_path / "a.oqcd"
    back, again = tmp_path / "back.h5", tmp_path / "again.lime"
    result = lqcdflow(["convert", configs, str(lime), "--to", "ildg"])
    assert result.returncode == 0, result.stderr
    assert "configuration 1 (trajectory 20)" in result.stdout
    for args, ranks in (([str(lime), str(oqcd), "--to", "openqcd"], 2),
                        ([str(oqcd), str(back), "--to", "lqcdflow"], 4),
                        ([str(back), str(again), "--to", "ildg"], 1)):
        result = lqcdflow(["convert", *args], ranks=ranks)
        assert result.returncode == 0, result.stderr
    result = lqcdflow(["convert", str(lime), str(tmp_path / "x.h5"), "--to", "lqcdflow"])
    assert "ILDG configuration" in result.stdout and "(SciDAC checksum verified)" in result.stdout
    assert ildg_payload(lime) == ildg_payload(again)
    with h5py.File(back, "r") as f, h5py.File(configs, "r") as g:
        assert f["configurations/U"][0].tobytes() == g["configurations/U"][1].tobytes()
    started = {}
    for ranks in (1, 2):
        path = su3_run(tmp_path / f"s{ranks}.toml", 10, **{
            'start = "hot"': f'start = "file"\nstart_file = "{lime}"'})
        result = lqcdflow(["run", str(path)], ranks=ranks)
        assert result.returncode == 0, result.stderr
        assert f"starting from {lime}" in result.stdout
        started[ranks] = series(tmp_path / f"s{ranks}.h5")
    assert started[1] == started[2]
    one_line_error(lqcdflow(["convert", configs, str(lime), "--to", "ildg"]),
                   "a.lime exists; use --overwrite to replace it")
    one_line_error(lqcdflow(["convert", str(tmp_path / "none"), str(tmp_path / "y"), "--to",
                             "ildg"]), "unreadable")
    u1 = write_run_file(tmp_path / "u1.toml", 20, 10, text=U1_RUN_FILE.replace(
        "shape = [8, 8]", "shape = [4, 6, 2, 4]"),
        **{'start = "hot"': f'start = "file"\nstart_file = "{oqcd}"'})
    one_line_error(lqcdflow(["run", str(u1)]), "hold SU(3) links in 4D")
    bare = su3_run(tmp_path / "bare.toml", 10, **{'start = "hot"': 'start = "file"'})
    one_line_error(lqcdflow(["run", str(bare)]), "[run] start = 'file' needs start_file")
