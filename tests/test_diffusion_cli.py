"""`lqcdflow train` and `lqcdflow sample` of a diffusion model ([sampler] algorithm =
"diffusion") end to end: learning from the configurations of an HMC run, training continued on
another rank count, sampling continued on another rank count, `status --train`, and one-line
errors for what cannot be learnt from. Every mpiexec run is bounded by a timeout; lattices and
models are tiny."""

import h5py
import numpy as np
import pytest
from runs import FLOW_RUN_FILE, lqcdflow, one_line_error, write_run_file

from lqcdflow.io.ensemble import last_commit

# The flow run file of the other tests, its [flow] section made a [diffusion] one.
DIFFUSION_RUN = FLOW_RUN_FILE.replace('algorithm = "nmcmc"', 'algorithm = "diffusion"').replace(
    '[flow]\ncoupling = "affine"\nn_layers = 2\n',
    '[diffusion]\ndata = "DATA"\node_steps = 4\n'
    'schedule = "constant"  # a cosine schedule would follow the changed steps of a continued run\n')
assert DIFFUSION_RUN.count("DATA") == 1 and '"diffusion"' in DIFFUSION_RUN

# An HMC run of the same theory that writes its configurations.
DATA_RUN = FLOW_RUN_FILE[:FLOW_RUN_FILE.index("[sampler]")] + """[sampler]
n_steps = 4
n_trajectories = {n_trajectories}
n_thermalization = 10

[output]
file = "{out}"
configurations = "{out}.configs.h5"

[checkpoint]
directory = "{checkpoints}"
every = {every}

[run]
seed = 3
start = "hot"
"""


@pytest.fixture(scope="module", autouse=True)
def one_thread_per_rank():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield


def hmc_configurations(directory, n_trajectories):
    """The configurations file of an HMC run (10 trajectories of thermalisation)."""
    run = write_run_file(directory / "hmc.toml", n_trajectories, n_trajectories, text=DATA_RUN)
    assert lqcdflow(["run", "-q", str(run)]).returncode == 0
    return run.with_suffix(".h5.configs.h5")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """50 configurations after thermalisation."""
    return hmc_configurations(tmp_path_factory.mktemp("data"), 60)


def diffusion_run(path, data, n_trajectories=40, **replace):
    return write_run_file(path, n_trajectories, 20,
                          text=DIFFUSION_RUN.replace("DATA", str(data)), **replace)


def parameters(path):
    """{name: array} of a state file's parameters, and its training step."""
    with h5py.File(path, "r") as f:
        return {name: f["parameters"][name][()] for name in f["parameters"]}, int(f.attrs["step"])


def chain(path):
    """The committed decisions (bytes) and observables of an ensemble file."""
    with h5py.File(path, "r") as f:
        lengths = last_commit(f).lengths
        return (f["mc/accepted"][:lengths["mc"]].tobytes(),
                {name: f["observables"][name][:lengths["observables"]]
                 for name in f["observables"]})


def test_train_and_sample_continue_on_other_rank_counts(tmp_path, data):
    """20 training steps on 1 rank equal 10 on 2 ranks and 10 more on 1 (to 1e-12), and are not
    continued with other data; a chain of 40 on 1 rank equals 20 on 2 ranks continued to 40 on
    1: the same decisions, the observables to 1e-12."""
    whole = diffusion_run(tmp_path / "whole.toml", data)
    result = lqcdflow(["train", str(whole)])
    assert result.returncode == 0, result.stderr
    assert "learning from 50 configurations, sha256 " in result.stdout
    assert "training a diffusion model of" in result.stdout and "loss" in result.stdout
    state = tmp_path / "whole.diffusion.h5"
    cut = diffusion_run(tmp_path / "cut.toml", data, **{"steps = 20": "steps = 10"})
    assert lqcdflow(["train", "-q", str(cut)], ranks=2).returncode == 0
    diffusion_run(cut, data)
    assert lqcdflow(["train", "-q", str(cut)]).returncode == 0
    (want, want_step) = parameters(state)
    (got, got_step) = parameters(tmp_path / "cut.diffusion.h5")
    assert want_step == got_step == 20 and sorted(want) == sorted(got)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-14, err_msg=name)
    assert lqcdflow(["status", "--train", str(whole)]).returncode == 0
    other = diffusion_run(tmp_path / "other.toml", hmc_configurations(tmp_path, 30), **{
        "steps = 20": f'steps = 30\nstate = "{state}"'})
    one_line_error(lqcdflow(["train", str(other)]), "now gives 20 configurations, sha256 ")

    sampled = lqcdflow(["sample", str(whole)])
    assert sampled.returncode == 0, sampled.stderr
    assert "diffusion chain: acceptance" in sampled.stdout
    stopped = diffusion_run(tmp_path / "parts.toml", data, n_trajectories=20,
                            **{"steps = 20": f'steps = 20\nstate = "{state}"'})
    assert lqcdflow(["sample", "-q", str(stopped)], ranks=2).returncode == 0
    diffusion_run(stopped, data, **{"steps = 20": f'steps = 20\nstate = "{state}"'})
    assert lqcdflow(["sample", "-q", str(stopped)]).returncode == 0
    (want, want_obs), (got, got_obs) = chain(tmp_path / "whole.h5"), chain(tmp_path / "parts.h5")
    assert got == want and 0 < np.frombuffer(want, np.int8).mean() < 1
    for name in want_obs:  # bitwise: proposals without autograd are (lqcdflow.flows.layers)
        assert np.array_equal(got_obs[name], want_obs[name]), name


@pytest.mark.parametrize("command, replace, message", [
    ("train", {'data = "DATA"': ""}, "[diffusion] missing key 'data'"),
    ("train", {'data = "DATA"': 'data = "nowhere.h5"'}, "[diffusion] data nowhere.h5 not found"),
    ("train", {'algorithm = "diffusion"': 'algorithm = "nmcmc"'},
     "section [diffusion] is only used by [sampler] algorithm = 'diffusion'"),
    ("sample", {"progress_every = 10": 'progress_every = 10\nconfigurations = "DATA"'},
     "is also the [diffusion] data; give each its own path"),
])
def test_what_cannot_be_learnt_from_is_a_one_line_error(tmp_path, data, command, replace,
                                                         message):
    text = DIFFUSION_RUN
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    run = write_run_file(tmp_path / "bad.toml", text=text.replace("DATA", str(data)))
    one_line_error(lqcdflow([command, str(run)]), message)


def test_data_of_the_hopping_form_is_refused(tmp_path):
    hopping = write_run_file(tmp_path / "hop.toml", 12, 12, text=DATA_RUN.replace(
        'form = "standard"\nm2 = -4.0\nlambda = 8.0',
        'form = "hopping"\nkappa = 0.2\nlambda = 0.5'))
    assert lqcdflow(["run", "-q", str(hopping)]).returncode == 0
    run = diffusion_run(tmp_path / "d.toml", hopping.with_suffix(".h5.configs.h5"))
    one_line_error(lqcdflow(["train", str(run)]), "holds phi^4 in the hopping form")
