"""`lqcdflow train` and `lqcdflow sample` end to end: the ensemble, training continued after a
walltime stop and a signal on other rank counts, sampling restarts and rank counts, one-line
errors; and the flow sampler of the runner against the library's nmcmc chain (``mpi``: every
process grid). Every mpiexec run is bounded by a timeout; lattices and flows are tiny."""

import math
import shutil
import signal
import subprocess

import h5py
import numpy as np
import pytest
from flow_helpers import setup, spec_for
from mpi4py import MPI
from runs import (RUN_FILE, SERIES, U1_FLOW_RUN_FILE, flow_run, interrupted, lqcdflow,
                  one_line_error, series, write_run_file)

from lqcdflow import build
from lqcdflow.cli import main
from lqcdflow.config import SAMPLING_DRAW, ConfigError, parse
from lqcdflow.flows import load_state, nmcmc
from lqcdflow.flows.train import acceptance_estimate
from lqcdflow.flows.sampler import IndependenceMetropolis
from lqcdflow.mc.stop import EXIT_RESUBMIT
from lqcdflow.parallel import Lattice
from lqcdflow.parallel.grid import valid_grids

# phi^4 of FLOW_RUN_FILE in the hopping form: (m^2, lambda) = (-4, 8) is (kappa, lambda) =
# (0.25, 0.5) (lqcdflow.theories.phi4.standard_to_hopping)
HOPPING = {'form = "standard"': 'form = "hopping"', "m2 = -4.0": "kappa = 0.25",
           "lambda = 8.0": "lambda = 0.5"}


@pytest.fixture(scope="module", autouse=True)
def one_thread_per_rank():
    """The test machine has few cores: torch must not start a thread pool per rank."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture
def cli(capsys):
    """``cli(ARGS, ranks=None)``: `lqcdflow ARGS` as a CompletedProcess; serial runs in this
    process (no interpreter and torch start-up per call), others under mpiexec."""
    def run(args, ranks=None):
        if ranks:
            return lqcdflow(args, ranks=ranks, timeout=240)
        capsys.readouterr()
        code = main(args)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)
    return run


def shared_state(path):
    """Replacement that puts the flow state at ``path`` (shared by several run files)."""
    return {"save_every = 10": f'save_every = 10\nstate = "{path}"'}


def read_state(path):
    """{name: array} of the parameters and Adam moments in a flow state file, and its step."""
    with h5py.File(path, "r") as f:
        arrays = {}
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
        return arrays, int(f.attrs["step"])


def assert_same_state(path, reference, rtol):
    got, step = read_state(path)
    want, want_step = read_state(reference)
    assert step == want_step and sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=0, err_msg=name)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A flow trained by `lqcdflow train` (20 steps, 1 rank): (state file, stdout)."""
    run = flow_run(tmp_path_factory.mktemp("trained") / "t.toml")
    result = lqcdflow(["train", str(run)])
    assert result.returncode == 0, result.stderr
    return run.with_suffix(".flow.h5"), result.stdout


def test_train_then_sample_writes_an_ensemble_of_the_flow_chain(tmp_path, trained, cli):
    state, stdout = trained
    progress = [line.split() for line in stdout.splitlines() if line.startswith("step")]
    assert [p[1] for p in progress] == ["5/20", "10/20", "15/20", "20/20"]
    for p in progress:
        fields = dict(zip(p[2::2], p[3::2]))
        assert math.isfinite(float(fields["loss"])) and 0 < float(fields["ess"]) <= 1
        assert 0 <= float(fields["acc"]) <= 1 and float(fields["lr"]) > 0
    assert read_state(state)[1] == 20
    run = flow_run(tmp_path / "f.toml", n_trajectories=120, every=50, **shared_state(state))
    before = state.read_bytes()
    again = cli(["train", str(run)])
    assert again.returncode == 0 and "training complete: step 20 of 20" in again.stdout
    assert "nothing to do" in again.stdout and state.read_bytes() == before
    status = cli(["status", "--train", str(run)])
    assert status.returncode == 0 and "training step 20 of 20" in status.stdout
    assert cli(["status", str(run)]).returncode == EXIT_RESUBMIT  # not sampled yet

    result = cli(["sample", str(run)])
    assert result.returncode == 0, result.stderr
    assert "traj     120/120" in result.stdout and "tau_int" in result.stdout
    summary = next(line for line in result.stdout.splitlines() if line.startswith("flow chain"))
    out = tmp_path / "f.h5"
    with h5py.File(out, "r") as f:
        assert f.attrs["format"] == "lqcdflow-ensemble" and f.attrs["sampler.algorithm"] == "nmcmc"
        assert f.attrs["flow.n_layers"] == 2 and f.attrs["sampler.batch"] == 7
        # keys of the other algorithm (or coupling) are no attributes of this ensemble
        assert "sampler.n_steps" not in f.attrs and "flow.bins" not in f.attrs
        assert list(f["mc/trajectory"][:]) == list(range(1, 121))
        assert f["observables/correlator"].shape == (120, 4)
        accepted, m = f["mc/accepted"][()].astype(bool), f["observables/m"][()]
        delta = f["mc/delta_H"][()]
    assert 0 < accepted.sum() < 120
    assert cli(["analyze", str(out)]).returncode == 0
    checkpoints = sorted(str(p) for p in (tmp_path / "f.ck").iterdir())
    assert cli(["info", str(out), *checkpoints]).returncode == 0
    assert cli(["status", str(run)]).returncode == 0

    # the chain is the library's nmcmc chain of the trained flow (same seed, draw, proposals)
    config = parse(run.read_text(), str(run))
    lattice = build.make_lattice(config, MPI.COMM_SELF)
    spec, flow, optimizer = build.make_model(config, lattice)
    assert load_state(str(state), flow, optimizer, spec, MPI.COMM_SELF) == (20, "float64")
    ref, _ = nmcmc(flow, spec.theory(lattice), spec.target(lattice), 120, 16, seed=11,
                   draw=SAMPLING_DRAW)
    assert np.array_equal(accepted, ref.accepted)
    np.testing.assert_allclose(m, ref.observables["m"], rtol=1e-14)  # slice sums: rounding
    assert np.all(accepted[delta <= 0])  # a proposal of larger weight is always accepted
    assert f"acceptance {ref.acceptance:.4f}" in summary
    assert f"ESS/N of the importance weights {ref.ess:.4f} over 120 proposals" in summary
    assert f"longest run of rejections {ref.longest_rejection_run}" in summary


def test_training_stopped_by_walltime_and_signal_continues_on_2_ranks_exactly(tmp_path, cli):
    """A walltime stop before the first step, a SIGUSR1 stop once training is under way
    (1 rank), the rest on 2 ranks: the state equals 200 uninterrupted steps on 1 rank to
    1e-12 (cosine schedule: the learning rate depends on the step, not on the segments)."""
    long = {"steps = 20": "steps = 200", "progress_every = 5": "progress_every = 1",
            "save_every = 10": "save_every = 1000"}
    reference = flow_run(tmp_path / "ref.toml", **long)
    assert cli(["train", "-q", str(reference)]).returncode == 0
    run = flow_run(tmp_path / "run.toml", **long)

    stopped = cli(["train", "--walltime", "0.001", str(run)])
    assert stopped.returncode == EXIT_RESUBMIT, stopped.stderr
    assert "stopped at step 0 of 200 (walltime" in stopped.stdout
    assert read_state(tmp_path / "run.flow.h5")[1] == 0

    result = interrupted(["train", str(run)], signal.SIGUSR1, progress="step")
    assert result.returncode == EXIT_RESUBMIT, result.stderr
    assert "(signal SIGUSR1); state saved" in result.stdout
    step = read_state(tmp_path / "run.flow.h5")[1]
    assert 0 < step < 200
    assert cli(["status", "--train", str(run)]).returncode == EXIT_RESUBMIT

    result = cli(["train", str(run)], ranks=2)
    assert result.returncode == 0, result.stderr
    assert f"continuing training from {tmp_path / 'run.flow.h5'} at step {step}" in result.stdout
    assert_same_state(tmp_path / "run.flow.h5", tmp_path / "ref.flow.h5", rtol=1e-12)


def test_sampling_restarts_and_rank_counts_give_the_same_chain(tmp_path, trained, cli):
    """60 proposals on 1 rank = 25 + 35 on 1 rank = 30 on 2 ranks + 30 on 1 rank, bitwise
    (decisions, delta_H and every observable)."""
    state = shared_state(trained[0])
    reference = flow_run(tmp_path / "ref.toml", n_trajectories=60, **state)
    assert cli(["sample", "-q", str(reference)]).returncode == 0
    ref = series(tmp_path / "ref.h5")
    assert set(SERIES) <= set(ref)

    for n_trajectories in (25, 60):
        run = flow_run(tmp_path / "a.toml", n_trajectories=n_trajectories, **state)
        result = cli(["sample", "-q", str(run)])
        assert result.returncode == 0, result.stderr
    assert series(tmp_path / "a.h5") == ref

    for n_trajectories, ranks in ((30, 2), (60, None)):
        run = flow_run(tmp_path / "b.toml", n_trajectories=n_trajectories, **state)
        result = cli(["sample", "-q", str(run)], ranks=ranks)
        assert result.returncode == 0, result.stderr
    assert series(tmp_path / "b.h5") == ref


@pytest.mark.parametrize("coupling", ["ncp", "spline"])
def test_u1_flow_trains_and_samples_bitwise_on_any_rank_count(tmp_path, cli, coupling):
    """A gauge-equivariant U(1) flow through the commands: trained on 2 ranks, sampled 20 on
    2 ranks + 20 on 1 rank = 40 on 1 rank bitwise; the ensemble holds U(1)'s observables."""
    layers = {"n_layers = 4": f'n_layers = 4\ncoupling = "{coupling}"'
              + ("\nbins = 4" if coupling == "spline" else "")}
    run = write_run_file(tmp_path / "u.toml", 40, 20, text=U1_FLOW_RUN_FILE, **layers)
    trained = cli(["train", str(run)], ranks=2)
    assert trained.returncode == 0, trained.stderr
    assert f"({coupling} couplings, 4 layers)" in trained.stdout
    assert cli(["sample", "-q", str(run)]).returncode == 0
    ref = series(tmp_path / "u.h5")
    assert "observables/topological_charge" in ref
    with h5py.File(tmp_path / "u.flow.h5", "r") as f:
        assert f.attrs["coupling"] == coupling
    state = {"n_layers = 4": f'state = "{tmp_path / "u.flow.h5"}"\n'
             + layers["n_layers = 4"]}
    parts = write_run_file(tmp_path / "p.toml", 20, 20, text=U1_FLOW_RUN_FILE, **state)
    assert cli(["sample", "-q", str(parts)], ranks=2).returncode == 0
    write_run_file(parts, 40, 20, text=U1_FLOW_RUN_FILE, **state)
    assert cli(["sample", "-q", str(parts)]).returncode == 0
    assert series(tmp_path / "p.h5") == ref


def test_a_hopping_form_flow_samples_the_hopping_form(tmp_path, cli):
    """The hopping form's flow (its field phi_std / sqrt(kappa)) trains and samples; its
    ensemble is the library's nmcmc chain of the hopping-form target."""
    run = flow_run(tmp_path / "h.toml", n_trajectories=40, every=20, **HOPPING,
                   **{"steps = 20": "steps = 20\nmax_grad_norm = 1.0"})
    assert cli(["train", "-q", str(run)]).returncode == 0
    assert cli(["sample", "-q", str(run)]).returncode == 0
    with h5py.File(tmp_path / "h.h5", "r") as f:
        assert f.attrs["theory.form"] == "hopping" and f.attrs["theory.kappa"] == 0.25
        accepted, action = f["mc/accepted"][()].astype(bool), f["observables/action"][()]
    config = parse(run.read_text(), str(run))
    lattice = build.make_lattice(config, MPI.COMM_SELF)
    spec, flow, optimizer = build.make_model(config, lattice)
    load_state(str(tmp_path / "h.flow.h5"), flow, optimizer, spec, MPI.COMM_SELF)
    ref, _ = nmcmc(flow, spec.theory(lattice), spec.target(lattice), 40, 16, seed=11,
                   draw=SAMPLING_DRAW)
    assert 0 < accepted.sum() < 40 and np.array_equal(accepted, ref.accepted)
    assert np.array_equal(action, ref.observables["action"])


def test_float32_and_a_partly_trained_flow(tmp_path, cli):
    """Training and sampling in float32; sampling a flow trained for 3 of 5 steps warns."""
    float32 = {"seed = 11": 'seed = 11\ndtype = "float32"'}
    run = flow_run(tmp_path / "s.toml", n_trajectories=20, **float32,
                   **{"steps = 20": "steps = 3"})
    assert cli(["train", "-q", str(run)]).returncode == 0
    with h5py.File(tmp_path / "s.flow.h5", "r") as f:
        assert all(d.dtype == np.float32 for d in f["parameters"].values())
    flow_run(tmp_path / "s.toml", n_trajectories=20, **float32, **{"steps = 20": "steps = 5"})
    result = cli(["sample", str(run)])
    assert result.returncode == 0, result.stderr
    assert "flow chain: acceptance" in result.stdout
    assert result.stderr.strip() == (f"lqcdflow: warning: the flow in {tmp_path / 's.flow.h5'} "
                                     "is trained for 3 of 5 steps; sampling with it anyway")


def test_state_dtype_training_refused_sampling_converted(tmp_path, trained, cli):
    """A float64 state: continuing its training in float32 is a one-line error, sampling in
    float32 converts it with a warning; the same for a state file written before the dtype
    was recorded (its dtype is that of its parameters)."""
    float32 = {"seed = 11": 'seed = 11\ndtype = "float32"'}
    state = tmp_path / "d.flow.h5"
    for recorded in (True, False):
        shutil.copyfile(trained[0], state)
        with h5py.File(state, "a") as f:
            assert f.attrs["dtype"] == "float64"
            if not recorded:  # as written before the dtype, format and hash were
                for key in ("dtype", "format", "state_sha256"):
                    del f.attrs[key]
        before = state.read_bytes()
        run = flow_run(tmp_path / "d.toml", n_trajectories=20, every=10, **float32,
                       **{"steps = 20": "steps = 30"})
        one_line_error(cli(["train", str(run)]),
                       f"{state} holds a float64 flow, not float32: training continues only "
                       "in the precision it started in")
        assert state.read_bytes() == before
        result = cli(["sample", "-q", "--restart", "never", str(run)])
        assert result.returncode == 0, result.stderr
        assert result.stderr.splitlines() == [
            f"lqcdflow: warning: the flow in {state} is trained for 20 of 30 steps; sampling "
            "with it anyway",
            f"lqcdflow: warning: the flow in {state} was trained in float64; sampling in "
            "float32 with its parameters converted"]
        (tmp_path / "d.h5").unlink()
        shutil.rmtree(tmp_path / "d.ck")


def test_hmc_ensembles_have_no_flow_sampling_keys(tmp_path, cli):
    run = write_run_file(tmp_path / "h.toml", n_trajectories=10)
    assert cli(["run", "-q", str(run)]).returncode == 0
    with h5py.File(tmp_path / "h.h5", "r") as f:
        assert f.attrs["sampler.n_steps"] == 4 and f.attrs["theory.m2"] == ""
        assert "sampler.batch" not in f.attrs
        assert not [key for key in f.attrs if key.startswith("flow.")]


BAD_FLOW_RUN_FILES = [
    ({"batch = 7": "batch = 7\nn_steps = 4"},
     "[sampler] key 'n_steps' is only used by algorithm = 'hmc'"),
    ({"n_layers = 2": "n_layers = 2\nlayers = 3"}, "[flow] unknown key 'layers'"),
    ({"n_layers = 2": "n_layers = 2\nbins = 4"},
     "[flow] key 'bins' is only used by coupling = 'spline'"),
    ({"steps = 20": 'steps = 20\nschedule = "constant"\nlr_min = 0.001'},
     "[flow] key 'lr_min' is only used by schedule = 'cosine'"),
    ({"batch = 8": "batch = 1"}, "[flow] batch = 1 is not allowed; expected an integer >= 2"),
    ({"steps = 20": "steps = 20\nmax_grad_norm = -1.0"},
     "[flow] max_grad_norm = -1.0 is not allowed; expected a number >= 0"),
    ({"hidden = [4]": "hidden = []"}, "[flow] hidden = [] is not allowed"),
]


@pytest.mark.parametrize("text, replace, message", [
    (U1_FLOW_RUN_FILE, {"n_layers = 4": 'n_layers = 4\ncoupling = "affine"'},
     "[flow] coupling = 'affine' cannot be used with [theory] name = 'u1': expected 'ncp' or "
     "'spline'"),
    (U1_FLOW_RUN_FILE, {"n_layers = 4": 'n_layers = 4\ncoupling = "spline"\nbound = 3.0'},
     "[flow] key 'bound' is only used by [theory] name = 'phi4'"),
    (U1_FLOW_RUN_FILE, {"n_layers = 4": "n_layers = 4\nz2 = true"},
     "[flow] key 'z2' is only used by [theory] name = 'phi4'"),
    (U1_FLOW_RUN_FILE, {"n_layers = 4": "n_layers = 4\nbins = 3"},
     "[flow] key 'bins' is only used by coupling = 'spline'"),
    (U1_FLOW_RUN_FILE, {"shape = [8, 4]": "shape = [6, 4]"},
     "U(1) flows need a 2D lattice with extents that are multiples of 4"),
    (U1_FLOW_RUN_FILE, {'algorithm = "nmcmc"': 'algorithm = "diffusion"', "[flow]": "[diffusion]",
                        "n_layers = 4": 'data = "x.h5"'},
     "[theory] name = 'u1' cannot be used with algorithm = 'diffusion'; it is sampled with "
     "'hmc' or 'langevin' or 'metropolis' or 'heatbath' or 'nmcmc'"),
    (None, {**HOPPING, 'algorithm = "nmcmc"': 'algorithm = "diffusion"',
            "[flow]": "[diffusion]", 'coupling = "affine"\nn_layers = 2': 'data = "x.h5"'},
     "[theory] form = 'hopping' cannot be used with algorithm = 'diffusion': diffusion "
     "models sample the standard form"),
    (None, {'coupling = "affine"': 'coupling = "ncp"'},
     "[flow] coupling = 'ncp' cannot be used with [theory] name = 'phi4': expected 'spline' "
     "or 'affine'"),
    (None, {"n_layers = 2": "n_layers = 2\ncomponents = 3"},
     "[flow] key 'components' is only used by coupling = 'ncp'"),
])
def test_flow_couplings_belong_to_their_theory(tmp_path, text, replace, message):
    run = (write_run_file(tmp_path / "u.toml", text=text, **replace) if text
           else flow_run(tmp_path / "u.toml", **replace))
    with pytest.raises(ConfigError) as error:
        parse(run.read_text(), str(run))
    assert message in str(error.value)


@pytest.mark.parametrize("replace, message", BAD_FLOW_RUN_FILES)
def test_bad_flow_run_files_give_one_line_and_exit_2(tmp_path, replace, message, cli):
    run = flow_run(tmp_path / "bad.toml", **replace)
    for subcommand in ("train", "sample"):
        one_line_error(cli([subcommand, str(run)]), message)
    assert not (tmp_path / "bad.flow.h5").exists() and not (tmp_path / "bad.h5").exists()


def test_commands_refuse_the_other_algorithm(tmp_path, cli):
    flows = flow_run(tmp_path / "f.toml")
    one_line_error(cli(["run", str(flows)]),
                   "lqcdflow run does not run [sampler] algorithm = 'nmcmc'; use lqcdflow "
                   "train, then lqcdflow sample")
    hmc = write_run_file(tmp_path / "h.toml")
    one_line_error(cli(["sample", str(hmc)]), "use lqcdflow run")
    one_line_error(cli(["status", "--train", str(hmc)]), "needs [sampler] algorithm")
    with_flow = write_run_file(tmp_path / "hf.toml", text=RUN_FILE + "\n[flow]\nsteps = 3\n")
    one_line_error(cli(["run", str(with_flow)]),
                   "section [flow] is only used by [sampler] algorithm = 'nmcmc'")
    with_batch = write_run_file(tmp_path / "hb.toml", **{"n_steps = 4": "n_steps = 4\nbatch = 8"})
    one_line_error(cli(["run", str(with_batch)]),
                   "[sampler] key 'batch' is only used by algorithm = 'nmcmc' or 'diffusion'")
    no_steps = write_run_file(tmp_path / "hn.toml", **{"n_steps = 4": ""})
    one_line_error(cli(["run", str(no_steps)]), "[sampler] missing key 'n_steps'")


def test_missing_foreign_and_unfitting_flow_states_are_one_line_errors(tmp_path, trained, cli):
    run = flow_run(tmp_path / "f.toml", n_trajectories=20, every=10)
    state = tmp_path / "f.flow.h5"
    one_line_error(cli(["sample", str(run)], ranks=2),
                   f"flow state {state} not found; train the flow first")
    shutil.copyfile(trained[0], state)
    assert cli(["sample", "-q", str(run)]).returncode == 0
    wider = flow_run(tmp_path / "f.toml", **{"hidden = [4]": "hidden = [5]"})
    one_line_error(cli(["sample", str(wider)]),
                   f"{state} holds a different flow: hidden: file [4], expected [5]")
    hopping = flow_run(tmp_path / "f.toml", **HOPPING)
    one_line_error(cli(["sample", str(hopping)]),
                   f"{state} holds a different flow: m2: file -4.0, expected none; lam: file "
                   "8.0, expected 0.5; form: file standard, expected hopping; kappa: file none, "
                   "expected 0.25")
    # more training changes the flow: its chain's checkpoints no longer continue
    longer = flow_run(tmp_path / "f.toml", n_trajectories=40, every=10,
                      **{"steps = 20": "steps = 25"})
    assert cli(["train", "-q", str(longer)]).returncode == 0
    one_line_error(cli(["sample", str(longer)]), "belongs to another run: nmcmc.flow_sha256")
    state.write_bytes(b"not hdf5")
    one_line_error(cli(["train", str(longer)]),
                   f"flow state {state} is unreadable (not an HDF5 file)")
    fresh = flow_run(tmp_path / "f.toml", **{'[checkpoint]': '[checkpoint]\nrestart = "never"'})
    one_line_error(cli(["train", str(fresh)]), "exists; use [checkpoint] restart")
    four_d = flow_run(tmp_path / "d.toml", **{"shape = [4, 4]": "shape = [2, 2, 2, 2]"})
    one_line_error(cli(["train", str(four_d)]), "[flow] does not fit [lattice] on 1 rank")


def test_restart_with_a_foreign_configurations_file_is_a_one_line_error(tmp_path, cli):
    configurations = {"progress_every = 10": "progress_every = 10\nconfigurations = "
                      f'"{tmp_path / "cfg.h5"}"'}
    run = write_run_file(tmp_path / "c.toml", n_trajectories=20, **configurations)
    assert cli(["run", "-q", str(run)]).returncode == 0
    shutil.copyfile(tmp_path / "c.h5", tmp_path / "cfg.h5")  # an ensemble, not configurations
    write_run_file(run, n_trajectories=30, **configurations)
    one_line_error(cli(["run", str(run)], ranks=2),
                   f"{tmp_path / 'cfg.h5'} is not an lqcdflow configuration file")


def test_acceptance_estimate_predicts_the_chain():
    """Independence Metropolis with log-normal weights (log w ~ N(0, s^2)): the acceptance of a
    long chain against the estimate from one batch of 4000 weights (errors ~ 0.005 and 0.01)."""
    rng = np.random.default_rng(1)
    for s in (0.3, 1.0, 2.5):
        log_w = s * rng.standard_normal(200_000)
        log_u = np.log(rng.uniform(size=log_w.size))
        current, accepted = log_w[0], 0
        for lw, lu in zip(log_w[1:], log_u[1:]):
            if lu < lw - current:
                current, accepted = lw, accepted + 1
        rate = accepted / (log_w.size - 1)
        estimate = acceptance_estimate(s * rng.standard_normal(4000))
        assert abs(estimate - rate) < 0.04, (s, estimate, rate)
    assert acceptance_estimate([1.0, 1.0]) == 1.0
    pairs = np.array([0.3, -1.2, 2.0, 0.7])
    w = np.exp(pairs)
    brute = sum(min(a, b) for i, a in enumerate(w) for j, b in enumerate(w) if i != j)
    assert acceptance_estimate(pairs) == pytest.approx(brute / (3 * w.sum()), rel=1e-14)


@pytest.mark.mpi
def test_runner_flow_sampler_is_the_nmcmc_chain_on_every_grid(comm):
    """The one-proposal-at-a-time sampler (batch 5) is nmcmc() (batch 16, one rank) bit for bit
    on every process grid, also continued from its checkpoint attributes inside a block."""
    shape = (4, 4)
    spec = spec_for(shape)
    single = Lattice(shape, comm=MPI.COMM_SELF)
    ref, _ = nmcmc(setup(spec, single)[0], spec.theory(single), spec.target(single), 30, 16,
                   seed=9, draw=77)
    assert 0 < ref.acceptance < 1
    for grid in valid_grids(shape, comm.Get_size()):
        lattice = Lattice(shape, comm=comm, grid=grid)
        def fresh_sampler():
            return IndependenceMetropolis(setup(spec, lattice)[0], lattice,
                                          spec.target(lattice), 5, 9, 77)

        sampler = fresh_sampler()
        state, accepted, m = sampler.initial_state(), [], []
        for _ in range(30):
            if state.trajectory == 12:  # a restart from a checkpoint's attributes, mid-block
                attrs = {"trajectory": state.trajectory, "accepted": state.accepted,
                         **sampler.state_attrs(state)}
                sampler = fresh_sampler()
                state = sampler.restore(state.field.copy(), attrs)
            state, info = sampler.step(state)
            accepted.append(info.accepted)
            m.append(spec.theory(lattice).sum_observables(state.field)["m"])
        assert accepted == ref.accepted.tolist(), grid
        assert m == ref.observables["m"].tolist(), grid  # bitwise
        assert state.accepted == ref.accepted.sum()
        assert state.longest_rejection_run == ref.longest_rejection_run
        assert state.ess_fraction == pytest.approx(ref.ess, rel=1e-12)
