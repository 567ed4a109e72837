"""Command line: ``lqcdflow run RUN.toml``.

This layer only reads arguments, builds objects and calls the library; errors in what the
user gave (run file, process grid, output file) end every rank with one line and exit code 2;
any other exception on any rank aborts the whole MPI job with its traceback.
"""

import argparse

import lqcdflow
from lqcdflow.analysis import AnalysisError
from lqcdflow.analysis.command import add_arguments as add_analyze_arguments
from lqcdflow.backend import BackendError
from lqcdflow.config import ConfigError, parse
from lqcdflow.io.ensemble import EnsembleWriter, OutputError, run_attributes
from lqcdflow.parallel.grid import GridError

USER_ERRORS = (ConfigError, GridError, OutputError, BackendError, AnalysisError)


def read_run_file(path, comm):
    """Rank 0 reads the run file and broadcasts its text, so every rank validates the same."""
    text, error = None, None
    if comm.Get_rank() == 0:
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8")
        except FileNotFoundError:
            error = f"run file {path} not found"
        except (OSError, UnicodeDecodeError) as e:
            error = f"cannot read run file {path}: {e}"
    text, error = comm.bcast((text, error), root=0)
    if error:
        raise ConfigError(error)
    return parse(text, path), text


def cmd_run(args, comm):
    """Generate an HMC ensemble as the run file says."""
    from lqcdflow import build
    from lqcdflow.analysis.summary import format_table, summarize
    from lqcdflow.mc.driver import Measure, Progress, run_chain

    config, text = read_run_file(args.run_file, comm)
    lattice = build.make_lattice(config, comm)
    action = build.make_action(config, lattice)
    hmc = build.make_hmc(config, action)
    state = build.make_initial_state(config, lattice)
    sampler, output = config["sampler"], config["output"]
    writer = EnsembleWriter(output["file"], run_attributes(config, lattice, text),
                            lattice.shape[0], comm, overwrite=output["overwrite"])
    say = print if comm.Get_rank() == 0 and not args.quiet else None
    if say:
        say(f"lqcdflow {lqcdflow.__version__}: {lattice!r} on {lattice.size} rank(s)")
        say(f"theory {config['theory']}")
        say(f"integrator {hmc.scheme.describe(1)}, {hmc.n_steps} steps of "
            f"{hmc.step_size:.6g}, {hmc.scheme.force_evaluations(hmc.n_steps)} forces/traj")
    hooks = [Measure(action, writer, sampler["measure_every"]),
             Progress(writer, output["progress_every"], state.trajectory,
                      sampler["n_trajectories"], print_fn=say)]
    state = run_chain(hmc, state, sampler["n_trajectories"], hooks)
    writer.flush()
    if comm.Get_rank() == 0:
        try:
            rows = summarize(output["file"], sampler["n_thermalization"])
        except AnalysisError as e:  # the ensemble is written; only the table is impossible
            print(f"no table of results: {e}")
        else:
            print(format_table(rows, title=f"{output['file']}: trajectories "
                               f"{sampler['n_thermalization'] + 1}..{state.trajectory}"))
    return 0


def cmd_analyze(args, comm):
    """Gamma-method analysis of ensemble files (serial: rank 0 does it)."""
    from lqcdflow.analysis.command import run

    return run(args) if comm.Get_rank() == 0 else 0


def make_parser():
    parser = argparse.ArgumentParser(prog="lqcdflow", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=lqcdflow.__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="generate an ensemble with HMC from a TOML run file")
    run.add_argument("run_file")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    run.set_defaults(func=cmd_run)
    analyze = sub.add_parser("analyze", help="error analysis of ensemble files (Gamma method)")
    add_analyze_arguments(analyze)
    analyze.set_defaults(func=cmd_analyze)
    return parser


def main(argv=None):
    args = make_parser().parse_args(argv)
    from mpi4py import MPI

    from lqcdflow.parallel.comm import guarded

    comm = MPI.COMM_WORLD
    return guarded(lambda: args.func(args, comm), comm, USER_ERRORS)
