"""End to end: a free-field ensemble from ``lqcdflow run`` analysed by ``lqcdflow analyze``.

The free field (lambda = 0, hopping form) in D dimensions has, exactly and in any volume,
    chi = <M^2>/V = 1 / (2 - 4 kappa D),   U = <M^4>/<M^2>^2 = 3,   <S>/V = 1/2,
    d chi / d kappa = 4 D / (2 - 4 kappa D)^2,   dU / d kappa = 0,
    m_eff(t) = m with cosh m = (1 - 2 kappa (D - 1)) / (2 kappa),   xi_2nd = 1 / (2 sinh(m/2)).
Every reported value must agree with these within Z = 4.5 of its reported error.
"""

import json
import math

import numpy as np
import pytest
from matplotlib.image import imread

from lqcdflow.analysis import plots
from lqcdflow.analysis.command import analyze_files
from lqcdflow.analysis.summary import format_table, summarize
from lqcdflow.cli import main

Z = 4.5
KAPPA, D, CUT = 0.2, 2, 50
MASS = math.acosh((1 - 2 * KAPPA * (D - 1)) / (2 * KAPPA))
EXACT = {
    "chi": 1 / (2 - 4 * KAPPA * D),
    "binder_ratio": 3.0,
    "action_density": 0.5,
    "m": 0.0,
    "exp_minus_delta_H": 1.0,
    "dchi_dkappa": 4 * D / (2 - 4 * KAPPA * D) ** 2,
    "dbinder_dkappa": 0.0,
    "xi_2nd": 1 / (2 * math.sinh(MASS / 2)),
}
RUN_FILE = """
[lattice]
shape = [8, 8]
[theory]
form = "hopping"
kappa = {kappa}
lambda = 0.0
[sampler]
trajectory_length = 1.3
n_steps = 5
n_trajectories = 4000
n_thermalization = {cut}
[output]
file = "{file}"
progress_every = 1000
[run]
seed = 7
start = "hot"
"""


@pytest.fixture(scope="module")
def free_field(tmp_path_factory):
    """A free-field ensemble written by ``lqcdflow run`` (8x8, kappa = 0.2)."""
    directory = tmp_path_factory.mktemp("free")
    path = directory / "free.h5"
    (directory / "free.toml").write_text(RUN_FILE.format(kappa=KAPPA, cut=CUT, file=path))
    assert main(["run", "-q", str(directory / "free.toml")]) == 0
    return str(path)


def analyze_json(capsys, *args):
    capsys.readouterr()
    assert main(["analyze", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_free_field_agrees_with_the_exact_values(free_field, capsys):
    doc = analyze_json(capsys, free_field)
    assert doc["replicas"] == [{"name": "r0", "files": [free_field], "trajectories": [1, 4000],
                                "thermalization": CUT, "thermalization_source": "run file",
                                "n_measurements": 4000 - CUT}]
    for name, exact in EXACT.items():
        o = doc["observables"][name]
        assert abs(o["value"] - exact) < Z * o["error"], (name, o, exact)
        assert o["n_eff"] == pytest.approx(o["n_samples"] / (2 * o["tau_int"]))
    for point in doc["correlator"][1:]:
        m_eff = point["m_eff"]
        if m_eff is not None:
            assert abs(m_eff["value"] - MASS) < Z * m_eff["error"], point
    assert doc["correlator"][1]["m_eff"]["error"] < 0.05  # a meaningful check at t = 1
    # the correlator sums to chi, configuration by configuration
    c = [p["C"]["value"] for p in doc["correlator"]]
    assert doc["observables"]["chi"]["value"] == pytest.approx(
        c[0] + 2 * sum(c[1:4]) + c[4], rel=1e-10)


def test_text_report(free_field, capsys):
    capsys.readouterr()
    assert main(["analyze", free_field]) == 0
    out = capsys.readouterr().out
    assert "phi4 hopping form: kappa = 0.2, lambda = 0.0; lattice 8x8, V = 64" in out
    assert f"thermalisation cut at trajectory {CUT} (run file), {4000 - CUT} measurements" in out
    for label in ("<S>/V", "chi = <M^2>/V", "U = <M^4>/<M^2>^2", "d chi/d kappa", "xi_2nd",
                  "<exp(-dH)>", "acceptance", "m_eff(t)"):
        assert label in out


def test_thermalization_given_or_detected(free_field, capsys):
    given = analyze_json(capsys, free_field, "--thermalization", "1000")
    assert given["replicas"][0]["n_measurements"] == 3000
    assert given["observables"]["chi"]["n_samples"] == 3000
    detected = analyze_json(capsys, free_field, "-t", "auto")["replicas"][0]
    assert detected["thermalization_source"] == "detected"
    assert 0 <= detected["thermalization"] < 1000


def test_run_summary_is_the_analysis_table(free_field):
    rows = summarize(free_field, CUT)
    labels = [label for label, _ in rows]
    assert "chi = <M^2>/V" in labels and "U = <M^4>/<M^2>^2" in labels
    table = format_table(rows, title="free.h5")
    assert table.splitlines()[0] == "free.h5" and len(table.splitlines()) == len(rows) + 2


def test_plots_are_written_and_show_what_they_should(free_field, tmp_path):
    ensemble, results, paths = analyze_files([free_field], plot_dir=str(tmp_path / "plots"))
    names = sorted(p.rsplit("/", 1)[1] for p in paths)
    assert names == ["autocorrelation.png", "effective_mass.png", "histogram_m.png",
                     "history.png"]
    for path in paths:
        image = imread(path)
        assert image.shape[0] >= 300 and image.shape[1] >= 500
        assert image[..., :3].std() > 0.05  # not blank

    history = plots.history(ensemble, results)
    assert [ax.get_ylabel() for ax in history.axes] == ["$S/V$", "$M/V$", "$M^2/V$",
                                                         "$\\Delta H$"]
    assert history.axes[-1].get_xlabel() == "trajectory"
    for ax in history.axes:  # the thermalisation cut is marked in every panel
        assert any(list(line.get_xdata()) == [CUT, CUT] for line in ax.lines)
        assert ax.get_xlim()[1] >= 4000

    autocorrelation = plots.autocorrelations(ensemble, results)
    assert len(autocorrelation.axes) == 8
    for top, row in zip(autocorrelation.axes[:4], ("<S>/V", "<|M|>/V", "chi", "U")):
        assert top.get_title().startswith(row) and top.get_ylabel() == "$\\rho(t)$"
        window = results["chi"].estimate.window if row == "chi" else None
        if window is not None:
            assert any(list(line.get_xdata()) == [window, window] for line in top.lines)

    (ax,) = plots.histogram(ensemble).axes
    assert ax.get_xlabel() == "$M/V$" and len(ax.patches) > 10

    left, right = plots.effective_mass(results).axes
    assert left.get_yscale() == "log" and right.get_ylabel() == "$m_\\mathrm{eff}(t)$"


def test_user_errors_end_with_one_line_and_exit_code_2(free_field, tmp_path, capsys):
    capsys.readouterr()
    assert main(["analyze", str(tmp_path / "missing.h5")]) == 2
    err = capsys.readouterr().err
    assert err == f"lqcdflow: error: {tmp_path / 'missing.h5'}: no such file\n"
    assert main(["analyze", free_field, "-t", "3950"]) == 2
    err = capsys.readouterr().err
    assert "50 measurements after thermalisation; the Gamma method needs at least 100" in err
    assert err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_:
        main(["analyze", free_field, "-t", "soon"])
    assert exit_.value.code == 2
    assert "expected 'auto' or an integer >= 0" in capsys.readouterr().err


def test_json_is_strict(free_field, capsys):
    doc = analyze_json(capsys, free_field)
    text = json.dumps(doc, allow_nan=False)  # no NaN or infinity anywhere
    assert json.loads(text) == doc
    assert np.isfinite(doc["observables"]["chi"]["tau_int_error"])
