"""Helpers for tests that run the ``lqcdflow`` command (serially or under mpiexec)."""

import subprocess
import sys

import h5py

from lqcdflow.io.ensemble import last_commit

TIMEOUT = 120

# The shared run files take the array kernels: each process that loads the compiled ones pays
# ~0.7 s of start-up (numba), which over the hundreds of runs of the suite would cost minutes;
# the compiled kernels' chains are the same bits (tests/test_kernels.py, on 1 and 2 ranks).

RUN_FILE = """
[lattice]
shape = [8, 4]

[theory]
form = "hopping"
kappa = 0.2
lambda = 0.3

[sampler]
integrator = "omelyan2"
n_steps = 4
n_trajectories = {n_trajectories}
n_thermalization = 5
measure_every = 2

[output]
file = "{out}"
progress_every = 10

[checkpoint]
directory = "{checkpoints}"
every = {every}

[run]
seed = 7
start = "hot"
kernels = "numpy"
"""

U1_RUN_FILE = """
[lattice]
shape = [8, 8]

[theory]
name = "u1"
beta = 1.5

[sampler]
n_steps = 5
n_trajectories = {n_trajectories}
n_thermalization = 10

[output]
file = "{out}"
progress_every = 10
configurations = "{out}.configs.h5"
save_every = 10

[checkpoint]
directory = "{checkpoints}"
every = {every}

[run]
seed = 11
start = "hot"
kernels = "numpy"
"""
SU3_RUN_FILE = U1_RUN_FILE.replace("shape = [8, 8]", "shape = [4, 4, 4, 4]").replace(
    'name = "u1"\nbeta = 1.5', 'name = "su3"\nbeta = 5.7').replace(
    "n_steps = 5", "n_steps = 6").replace("n_thermalization = 10", "n_thermalization = 4")


FLOW_RUN_FILE = """
[lattice]
shape = [4, 4]

[theory]
form = "standard"
m2 = -4.0
lambda = 8.0

[sampler]
algorithm = "nmcmc"
n_trajectories = {n_trajectories}
n_thermalization = 5
batch = 7

[flow]
coupling = "affine"
n_layers = 2
hidden = [4]
batch = 8
steps = 20
learning_rate = 0.01
progress_every = 5
save_every = 10

[output]
file = "{out}"
progress_every = 10

[checkpoint]
directory = "{checkpoints}"
every = {every}

[run]
seed = 11
"""

U1_FLOW_RUN_FILE = """
[lattice]
shape = [8, 4]

[theory]
name = "u1"
beta = 1.0

[sampler]
algorithm = "nmcmc"
n_trajectories = {n_trajectories}
n_thermalization = 5
batch = 6

[flow]
n_layers = 4
hidden = [4]
batch = 8
steps = 10
learning_rate = 0.01

[output]
file = "{out}"

[checkpoint]
directory = "{checkpoints}"
every = {every}

[run]
seed = 11
"""

# replacements of RUN_FILE: an Ising heatbath run, and a U(1) Metropolis run
ISING_RUN = {'form = "hopping"\nkappa = 0.2\nlambda = 0.3': 'name = "ising"\nbeta = 0.4',
             'integrator = "omelyan2"\nn_steps = 4': 'algorithm = "heatbath"',
             "shape = [8, 4]": "shape = [8, 8]"}
U1_LOCAL_RUN = {**ISING_RUN, 'name = "ising"\nbeta = 0.4': 'name = "u1"\nbeta = 1.5',
                'algorithm = "heatbath"': 'algorithm = "metropolis"\nwidth = 2.0'}

SERIES = ("mc/trajectory", "mc/accepted", "mc/delta_H", "observables/trajectory",
          "observables/action", "observables/m", "observables/abs_m", "observables/m2",
          "observables/m4", "observables/W", "observables/correlator")


def command(args, ranks=None):
    """The argument list that runs ``lqcdflow ARGS`` (under ``mpiexec -n RANKS`` if given)."""
    command = [sys.executable, "-m", "lqcdflow", *args]
    return ["mpiexec", "-n", str(ranks), *command] if ranks else command


def lqcdflow(args, ranks=None, timeout=TIMEOUT):
    return subprocess.run(command(args, ranks), capture_output=True, text=True, timeout=timeout)


def write_run_file(path, n_trajectories=30, every=10, text=RUN_FILE, **replace):
    """A run file at ``path`` writing ``path.h5`` with checkpoints in ``path.ck``."""
    text = text.format(out=path.with_suffix(".h5"), checkpoints=path.with_suffix(".ck"),
                       n_trajectories=n_trajectories, every=every)
    for old, new in replace.items():
        text = text.replace(old, new)
    path.write_text(text)
    return path


def flow_run(path, n_trajectories=40, every=20, **replace):
    """A flow run file (algorithm = "nmcmc") at ``path``, as :func:`write_run_file`."""
    return write_run_file(path, n_trajectories, every, text=FLOW_RUN_FILE, **replace)


def series(path):
    """The committed records of every series of an ensemble file (/mc and /observables), as
    bytes per dataset."""
    with h5py.File(path, "r") as f:
        lengths = last_commit(f).lengths
        return {f"{group}/{name}": f[group][name][:lengths[group]].tobytes()
                for group in ("mc", "observables") for name in f[group]}


def one_line_error(result, message):
    """``result`` is the documented usage error: exit 2, one line ``lqcdflow: error: ...``
    on stderr that contains ``message``."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lqcdflow: error:"), result.stderr
    assert message in lines[0], lines[0]


def interrupted(args, sig, ranks=None, progress="traj", timeout=TIMEOUT):
    """Run ``lqcdflow ARGS``, send it ``sig`` (or call ``sig()`` if it is a function) once
    its first progress line (starting with ``progress``) is out, and return the finished
    CompletedProcess-like (returncode, stdout, stderr)."""
    process = subprocess.Popen(command(args, ranks), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith(progress):
            break
    if callable(sig):
        sig()
    else:
        process.send_signal(sig)
    out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)
