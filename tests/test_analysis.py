"""Ensemble analysis on synthetic series with known answers, and reading ensemble files.

Statistical checks use fixed seeds and bounds of Z = 4.5 standard deviations computed from
the known (or honestly estimated) spread, so a wrong estimator fails them.
"""

import math
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from mpi4py import MPI
from scipy.signal import lfilter

from lqcdflow.parallel import Lattice
from lqcdflow.theories.phi4 import Phi4, Phi4Couplings
from lqcdflow.analysis import AnalysisError
from lqcdflow.analysis.gamma import mean
from lqcdflow.analysis.read import load
from lqcdflow.analysis.results import analyze
from lqcdflow.analysis.series import Ensemble, Replica
from lqcdflow.analysis.thermalization import choose, detect
from lqcdflow.io.checksum import ATTRIBUTES_HASH, seal_attributes
from lqcdflow.io.ensemble import FORMAT, FORMAT_VERSION, EnsembleWriter
from lqcdflow.mc.hmc import TrajectoryInfo

Z = 4.5
SHAPE = (8, 8)
V = 64
CHI = 2.5  # sigma_M^2 / V of the synthetic magnetisation
B = 1 / 16  # W = W0 + B (M^2 - sigma_M^2) + noise, so d<A>/d kappa is known
W0 = 50.0


def ar1(rng, n, rho, sigma=1.0):
    """Stationary AR(1) series x_i = rho x_{i-1} + sqrt(1 - rho^2) sigma eps_i."""
    e = sigma * math.sqrt(1 - rho**2) * rng.standard_normal(n)
    e[0] = sigma * rng.standard_normal()
    return lfilter([1.0], [1.0, -rho], e)


def synthetic_observables(rng, n, rho=0.7):
    """Per-measurement series of a model with exact answers (see EXACT)."""
    sigma = math.sqrt(CHI * V)
    M = ar1(rng, n, rho, sigma)
    W = W0 + B * (M**2 - sigma**2) + ar1(rng, n, 0.3, 5.0)
    return {"action": V / 2 + ar1(rng, n, 0.5, math.sqrt(V / 2)), "m": M, "abs_m": np.abs(M),
            "m2": M**2, "m4": M**4, "W": W}


def synthetic_mc(rng, n):
    """accepted ~ Bernoulli(0.8); Delta H ~ N(s^2/2, s^2), so that <exp(-Delta H)> = 1."""
    s = 0.3
    return {"accepted": (rng.random(n) < 0.8).astype(float),
            "delta_H": s * s / 2 + s * rng.standard_normal(n)}


sigma_M = math.sqrt(CHI * V)
EXACT = {
    "action_density": 0.5, "m": 0.0, "abs_m": math.sqrt(2 / math.pi) * sigma_M / V,
    "m2": CHI / V, "m4": 3 * CHI**2 / V**2, "acceptance": 0.8, "exp_minus_delta_H": 1.0,
    "chi": CHI, "chi_connected": CHI * (1 - 2 / math.pi), "binder_ratio": 3.0,
    "dchi_dkappa": B * 2 * sigma_M**4 / V,
    "dabs_m_dkappa": B * math.sqrt(2 / math.pi) * sigma_M**3 / V,
    "dbinder_dkappa": 0.0,
}


def synthetic_replica(rng, n, name="r0", rho=0.7):
    trajectory = np.arange(1, n + 1)
    return Replica(name, ("synthetic",), trajectory, synthetic_observables(rng, n, rho),
                   trajectory, synthetic_mc(rng, n))


def hopping_ensemble(replicas):
    return Ensemble(replicas, SHAPE, {"name": "phi4", "form": "hopping", "kappa": 0.2,
                                      "lambda": 0.0})


# --- the Gamma method on series with known tau_int ------------------------------------------

def test_iid_gaussian_has_tau_one_half_and_the_naive_error():
    n = 20000
    x = np.random.default_rng(1).standard_normal(n)
    e = mean(x)
    assert abs(e.tau_int - 0.5) < Z * e.tau_int_error
    # the error of the mean is sqrt(2 tau_int Var / N); Var known = 1
    assert abs(e.error / math.sqrt(1 / n) - 1) < Z * math.sqrt(2 * (2 * e.window + 1) / n)
    assert abs(e.value) < Z / math.sqrt(n)


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.8, 0.9])
def test_ar1_tau_int(rho):
    n = 40000
    x = ar1(np.random.default_rng(int(100 * rho)), n, rho)
    e = mean(x)
    exact_tau = (1 + rho) / (2 * (1 - rho))
    assert abs(e.tau_int - exact_tau) < Z * e.tau_int_error
    assert abs(e.value) < Z * math.sqrt(2 * exact_tau / n)
    assert e.n_effective == pytest.approx(n / (2 * e.tau_int))


# --- derived quantities: errors against the spread over independent replicas --------------

@pytest.fixture(scope="module")
def replica_study():
    """K independent synthetic ensembles, each analysed on its own, and all K together."""
    rng = np.random.default_rng(2024)
    k, n = 150, 5000  # long enough that linear error propagation holds for dU/d kappa
    replicas = [synthetic_replica(rng, n, name=f"r{i}") for i in range(k)]
    single = [analyze(hopping_ensemble([r])) for r in replicas]
    return single, analyze(hopping_ensemble(replicas))


@pytest.mark.parametrize("name", list(EXACT))
def test_reported_errors_match_the_spread_over_replicas(replica_study, name):
    single, _ = replica_study
    k = len(single)
    values = np.array([s[name].estimate.value for s in single])
    errors = np.array([s[name].estimate.error for s in single])
    # the standard deviation over replicas vs the rms reported error: ratio 1 within the
    # sampling error of a standard deviation, 1/sqrt(2(K-1))
    ratio = values.std(ddof=1) / math.sqrt(np.mean(errors**2))
    assert abs(ratio - 1) < Z / math.sqrt(2 * (k - 1)), ratio
    # and the estimates scatter around the exact value
    assert abs(values.mean() - EXACT[name]) < Z * values.std(ddof=1) / math.sqrt(k)


@pytest.mark.parametrize("name", list(EXACT))
def test_replicas_combine_into_one_ensemble(replica_study, name):
    single, combined = replica_study
    k = len(single)
    values = np.array([s[name].estimate.value for s in single])
    c = combined[name].estimate
    assert c.n_samples == sum(s[name].estimate.n_samples for s in single)
    assert abs(c.value - EXACT[name]) < Z * c.error
    # equally long replicas: the combined error is that of the mean of the K estimates
    ratio = c.error / (values.std(ddof=1) / math.sqrt(k))
    assert abs(ratio - 1) < Z / math.sqrt(2 * (k - 1)), ratio
    if combined[name].kind == "primary":
        assert c.value == pytest.approx(values.mean(), rel=1e-12, abs=1e-15)


# --- thermalisation -------------------------------------------------------------------------

def test_detection_drops_a_transient_and_what_remains_is_unbiased():
    rng = np.random.default_rng(5)
    n, rho = 4000, 0.8
    series = ar1(rng, n, rho)
    series += 30.0 * rho ** np.arange(n)  # a start far from equilibrium, decaying as the chain
    obs = {"action": series, "abs_m": np.abs(ar1(rng, n, 0.5))}
    trajectory = np.arange(1, n + 1)
    replica = Replica("r0", ("x",), trajectory, obs, trajectory[:0], {})
    cut = detect(replica, ("action", "abs_m"))
    kept = mean(series[cut:])
    bias = 30.0 * rho**cut / (1 - rho) / (n - cut)  # of the mean of what is kept
    assert 0 < cut < n // 10
    assert bias < 0.5 * kept.error  # the transient left is negligible against the error
    assert abs(kept.value) < Z * kept.error


def test_detection_on_an_equilibrium_chain_keeps_most_of_it():
    rng = np.random.default_rng(6)
    n = 4000
    trajectory = np.arange(1, n + 1)
    obs = {"action": ar1(rng, n, 0.7), "abs_m": np.abs(ar1(rng, n, 0.7))}
    cut = detect(Replica("r0", ("x",), trajectory, obs, trajectory[:0], {}), ("action", "abs_m"))
    assert cut < n // 10


def test_choose_thermalization_given_auto_and_from_file():
    rng = np.random.default_rng(7)
    ensemble = hopping_ensemble([synthetic_replica(rng, 500).with_thermalization(40, "run file")])
    assert choose(ensemble, None).replicas[0].thermalization == 40
    given = choose(ensemble, 100).replicas[0]
    assert (given.thermalization, given.thermalization_source) == (100, "given")
    assert len(given.after_thermalization().trajectory) == 400
    assert choose(ensemble, "auto").replicas[0].thermalization_source == "detected"


# --- ensemble files -------------------------------------------------------------------------

def write_ensemble(path, n, seed, first=1, every=1, cut=0, theory=None, shape=SHAPE,
                   rng_seed=None, drop=()):
    """An ensemble file in the layout of lqcdflow run (written by EnsembleWriter).

    Trajectories first..first+n-1 with a measurement every ``every``; ``drop`` names
    datasets to delete afterwards (to imitate other samplers or damaged files).
    """
    rng = np.random.default_rng(seed if rng_seed is None else rng_seed)
    attrs = {"format": FORMAT, "format_version": FORMAT_VERSION, "volume": math.prod(shape),
             "lattice.shape": np.asarray(shape), "theory.name": "phi4",
             "theory.form": "hopping", "theory.kappa": 0.2, "theory.lambda": 0.0,
             "theory.m2": "", "sampler.n_thermalization": cut, "run.seed": seed}
    attrs.update(theory or {})
    declared = Phi4(Lattice(shape, comm=MPI.COMM_SELF), Phi4Couplings.hopping(0.2, 0.0)).observables
    writer = EnsembleWriter(str(path), attrs, declared, MPI.COMM_SELF, overwrite=True)
    trajectories = np.arange(first, first + n)
    mc = synthetic_mc(rng, n)
    measured = trajectories[trajectories % every == 0]
    obs = synthetic_observables(rng, len(measured))
    for t, acc, dh in zip(trajectories, mc["accepted"], mc["delta_H"]):
        writer.record_trajectory(TrajectoryInfo(int(t), float(dh), bool(acc)))
    for i, t in enumerate(measured):
        writer.record_measurement(int(t), {**{k: v[i] for k, v in obs.items()},
                                           "correlator": rng.standard_normal(shape[0])})
    writer.commit()
    with h5py.File(path, "a") as f:
        for name in drop:
            del f[name]
        seal_attributes(f)  # a file written without those series
    return path


def test_read_gives_the_written_series(tmp_path):
    path = write_ensemble(tmp_path / "a.h5", 300, seed=1, cut=20)
    ensemble = load([str(path)])
    (r,) = ensemble.replicas
    assert ensemble.shape == SHAPE and ensemble.volume == V
    assert ensemble.theory == {"name": "phi4", "form": "hopping", "kappa": 0.2, "lambda": 0.0}
    assert (r.thermalization, r.thermalization_source) == (20, "run file")
    assert len(r.trajectory) == len(r.mc_trajectory) == 300
    with h5py.File(path, "r") as f:  # the records are the first rows (the rest: capacity)
        np.testing.assert_array_equal(r.trajectory, f["observables/trajectory"][:300])
        np.testing.assert_array_equal(r.observables["m4"], f["observables/m4"][:300])
        np.testing.assert_array_equal(r.observables["correlator"],
                                      f["observables/correlator"][:300])
        np.testing.assert_array_equal(r.mc["delta_H"], f["mc/delta_H"][:300])


def test_segments_of_a_chain_join_and_other_chains_are_replicas(tmp_path):
    whole = write_ensemble(tmp_path / "whole.h5", 600, seed=1, cut=50)
    with h5py.File(whole, "r") as f:  # split it into two segments of the same chain
        data = {k: f[k][:] for k in ("mc/trajectory", "mc/accepted", "mc/delta_H",
                                     "observables/trajectory", "observables/m",
                                     "observables/abs_m", "observables/m2", "observables/m4",
                                     "observables/action", "observables/W",
                                     "observables/correlator")}
        attrs = dict(f.attrs)
    del attrs[ATTRIBUTES_HASH]  # the segments are files of version 2 (a SHA-256 per dataset)
    for name, part in (("first.h5", slice(0, 300)), ("second.h5", slice(300, 600))):
        with h5py.File(tmp_path / name, "w") as f:
            f.attrs.update(attrs)
            for k, v in data.items():
                f[k] = v[part]
    other = write_ensemble(tmp_path / "other.h5", 400, seed=2, cut=50)
    paths = [str(tmp_path / n) for n in ("second.h5", "other.h5", "first.h5")]
    ensemble = load(paths)
    assert [r.files for r in ensemble.replicas] == [
        (str(tmp_path / "first.h5"), str(tmp_path / "second.h5")), (str(other),)]
    joined = analyze(Ensemble(ensemble.replicas[:1], ensemble.shape, ensemble.theory))
    alone = analyze(load([str(whole)]))
    for row in alone.rows:
        assert joined[row.name].estimate == row.estimate  # the same chain, the same analysis
    both = analyze(ensemble)
    assert both["chi"].estimate.n_samples == 550 + 350


def test_continuation_with_the_same_seed_may_leave_a_gap(tmp_path):
    a = write_ensemble(tmp_path / "a.h5", 300, seed=1)
    b = write_ensemble(tmp_path / "b.h5", 300, seed=1, first=401, rng_seed=11)
    c = write_ensemble(tmp_path / "c.h5", 300, seed=3, first=401)
    chain = load([str(a), str(b)])
    assert len(chain.replicas) == 1
    assert analyze(chain)["chi"].estimate.n_samples == 600  # one chain with a gap
    assert len(load([str(a), str(c)]).replicas) == 2  # another seed after a gap: a new chain


def test_runs_with_incompatible_measurement_intervals_are_refused(tmp_path):
    a = write_ensemble(tmp_path / "a.h5", 300, seed=1, every=2)
    b = write_ensemble(tmp_path / "b.h5", 300, seed=2, every=3)
    with pytest.raises(AnalysisError, match="3 trajectories apart, not a multiple of the "
                                            "smallest distance 2"):
        load([str(a), str(b)]).check(100, 10)


def test_measurements_every_few_trajectories(tmp_path):
    path = write_ensemble(tmp_path / "a.h5", 2000, seed=1, every=4)
    ensemble = load([str(path)])
    assert ensemble.measurement_interval == 4
    results = analyze(ensemble)
    assert results["chi"].estimate.n_samples == 500
    assert results["acceptance"].estimate.n_samples == 2000


@pytest.mark.parametrize("change, message", [
    ({"theory.kappa": 0.21}, "theory.kappa = 0.2 vs 0.21"),
    ({"theory.form": "standard"}, "theory.form"),
])
def test_mismatched_runs_are_refused(tmp_path, change, message):
    a = write_ensemble(tmp_path / "a.h5", 200, seed=1)
    b = write_ensemble(tmp_path / "b.h5", 200, seed=2, theory=change)
    with pytest.raises(AnalysisError, match=message):
        load([str(a), str(b)])


def test_different_lattices_are_refused(tmp_path):
    a = write_ensemble(tmp_path / "a.h5", 200, seed=1)
    b = write_ensemble(tmp_path / "b.h5", 200, seed=2, shape=(8, 4))
    with pytest.raises(AnalysisError, match=r"lattice.shape \[8, 8\] vs \[8, 4\]"):
        load([str(a), str(b)])


def test_the_same_chain_twice_is_refused(tmp_path):
    a = write_ensemble(tmp_path / "a.h5", 200, seed=1)
    b = write_ensemble(tmp_path / "b.h5", 200, seed=1, first=101)
    with pytest.raises(AnalysisError,
                       match=r"same chain \(seed 1\) on overlapping trajectories 101..200"):
        load([str(a), str(b)])
    with pytest.raises(AnalysisError, match="given twice"):
        load([str(a), str(tmp_path / "." / "a.h5")])


@pytest.mark.parametrize("dataset", ["observables/m4", "observables/trajectory"])
def test_a_file_without_a_needed_series_is_refused(tmp_path, dataset):
    path = write_ensemble(tmp_path / "a.h5", 200, seed=1, drop=[dataset])
    with pytest.raises(AnalysisError, match=f"no series /{dataset}"):
        load([str(path)])


def test_not_a_file_or_not_hdf5(tmp_path):
    with pytest.raises(AnalysisError, match="no such file"):
        load([str(tmp_path / "missing.h5")])
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(AnalysisError, match="not an HDF5 file"):
        load([str(tmp_path / "text.h5")])


def test_optional_series_may_be_missing(tmp_path):
    """A flow-MCMC-like file: no delta_H, W or correlator; what needs them is left out."""
    path = write_ensemble(tmp_path / "a.h5", 300, seed=1, drop=[
        "mc/delta_H", "observables/W", "observables/correlator"])
    results = analyze(load([str(path)]))
    assert "acceptance" in results and "chi" in results and "binder_ratio" in results
    for name in ("exp_minus_delta_H", "dchi_dkappa", "xi_2nd"):
        assert name not in results
    assert results.correlator == []
    assert any("no series W" in n for n in results.notes)
    assert any("no series correlator" in n for n in results.notes)


def test_a_file_without_a_monte_carlo_record(tmp_path):
    path = write_ensemble(tmp_path / "a.h5", 300, seed=1, cut=10, drop=["mc"])
    ensemble = load([str(path)])
    assert ensemble.replicas[0].trajectories == (1, 300)
    results = analyze(ensemble)
    assert "acceptance" not in results and "exp_minus_delta_H" not in results
    assert results["chi"].estimate.n_samples == 290


def test_the_standard_form_has_no_kappa_derivatives(tmp_path):
    path = write_ensemble(tmp_path / "a.h5", 300, seed=1, theory={
        "theory.form": "standard", "theory.kappa": "", "theory.m2": -0.5})
    results = analyze(load([str(path)]))
    assert "dchi_dkappa" not in results
    assert any("not in the hopping form" in n for n in results.notes)


def test_too_short_chains_say_how_many_measurements_are_needed(tmp_path):
    path = write_ensemble(tmp_path / "a.h5", 120, seed=1, cut=60)
    ensemble = load([str(path)])
    with pytest.raises(AnalysisError, match="60 measurements after thermalisation; the Gamma "
                                            "method needs at least 100"):
        ensemble.check(100, 10)
    with pytest.raises(AnalysisError, match=r"replica r0 .* has 0 measurements .* at least 10"):
        choose(ensemble, 500).check(100, 10)


def test_a_partly_flushed_file_is_read_as_far_as_it_is_complete(tmp_path):
    path = write_ensemble(tmp_path / "a.h5", 300, seed=1)
    with h5py.File(path, "r+") as f:  # a commit wrote trajectory and m but not yet the rest
        for name in ("observables/trajectory", "observables/m", "mc/trajectory"):
            f[name][300:307] = 1000
    (r,) = load([str(path)]).replicas
    assert len(r.trajectory) == len(r.observables["m4"]) == len(r.observables["m"]) == 300
    assert len(r.mc_trajectory) == len(r.mc["accepted"]) == 300


def test_a_file_held_open_by_its_writer_can_be_read(tmp_path):
    path = write_ensemble(tmp_path / "a.h5", 300, seed=1)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import h5py, sys, time; f = h5py.File(sys.argv[1], 'a'); "
         "print('open', flush=True); time.sleep(30)", str(path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        start = time.monotonic()
        (r,) = load([str(path)]).replicas
        assert len(r.trajectory) == 300 and time.monotonic() - start < 5
    finally:
        holder.kill()
        holder.wait()
