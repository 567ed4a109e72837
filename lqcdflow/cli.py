"""Command line: ``lqcdflow run|status|info|analyze``.

This layer only reads arguments, builds objects and calls the library. Exit codes:
0 done; 1 ``info`` found a checksum mismatch (or an MPI abort); 2 the input cannot be used
(run file, process grid, output file, checkpoints: one line on stderr, every rank exits);
3 a run stopped early on a signal or the walltime, with a checkpoint: resubmit it.
Any other exception on any rank aborts the whole MPI job with its traceback.
"""

import argparse
import os
import sys
from functools import partial

import lqcdflow
from lqcdflow.analysis import AnalysisError
from lqcdflow.analysis.command import add_arguments as add_analyze_arguments
from lqcdflow.backend import BackendError
from lqcdflow.config import ConfigError, parse
from lqcdflow.io.checkpoint import CheckpointError
from lqcdflow.io.ensemble import OutputError
from lqcdflow.io.info import InfoError
from lqcdflow.parallel.grid import GridError

USER_ERRORS = (ConfigError, GridError, OutputError, BackendError, AnalysisError,
               CheckpointError, InfoError)


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
    """Generate or continue an HMC ensemble as the run file says."""
    from lqcdflow.analysis.summary import format_table, summarize
    from lqcdflow.mc.stop import StopRule
    from lqcdflow.runner import run_ensemble

    # Signal handlers first: a signal during start-up must stop the run cleanly, not kill it;
    # the walltime clock starts here too.
    with StopRule(comm) as stop_rule:
        config, text = read_run_file(args.run_file, comm)
        if args.restart is not None:
            config["checkpoint"]["restart"] = args.restart
        if args.walltime is not None:
            config["checkpoint"]["walltime"] = args.walltime
        # flushed at once: batch logs and pipes must show progress while the job runs
        say = partial(print, flush=True) if comm.Get_rank() == 0 and not args.quiet else None
        if say:
            say(f"lqcdflow {lqcdflow.__version__} on {comm.Get_size()} rank(s): "
                f"theory {config['theory']}, lattice {config['lattice']}")
        code = run_ensemble(config, text, comm, stop_rule, say)
    output, sampler = config["output"], config["sampler"]
    if comm.Get_rank() == 0:
        try:
            rows = summarize(output["file"], sampler["n_thermalization"])
        except AnalysisError as e:  # the ensemble is written; only the table is impossible
            print(f"no table of results: {e}")
        else:
            print(format_table(rows, title=f"{output['file']}: trajectories after "
                               f"{sampler['n_thermalization']}"))
    return code


def cmd_status(args, comm):
    """Exit 0 if the run file's chain is complete, EXIT_RESUBMIT if it is not (rank 0).

    For job scripts: launchers do not all pass the ranks' exit code on (MPICH's mpiexec
    returns 0 after forwarding a signal, or when its stdin is /dev/null).
    """
    from lqcdflow.io.checkpoint import newest_trajectory
    from lqcdflow.mc.stop import EXIT_RESUBMIT

    config, _ = read_run_file(args.run_file, comm)
    if comm.Get_rank() != 0:
        return 0
    target = config["sampler"]["n_trajectories"]
    done, path = newest_trajectory(config["checkpoint"]["directory"])
    print(f"trajectory {done} of {target}" + (f" ({path})" if path else " (no checkpoint)"))
    return 0 if done >= target else EXIT_RESUBMIT


def cmd_info(args, comm):
    """Print what lqcdflow files hold and verify their checksums (rank 0)."""
    from lqcdflow.io.info import inspect

    if comm.Get_rank() != 0:
        return 0
    corrupt = []
    for path in args.files:
        lines, bad = inspect(path)
        print("\n".join(lines))
        corrupt += bad
    if corrupt:
        print(f"lqcdflow: error: checksum mismatch in {', '.join(corrupt)}", file=sys.stderr)
        return 1
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
    run.add_argument("--restart", choices=("auto", "never"),
                     help="override [checkpoint] restart")
    run.add_argument("--walltime", type=float, metavar="SECONDS",
                     help="override [checkpoint] walltime (seconds this job may run)")
    run.set_defaults(func=cmd_run)
    status = sub.add_parser("status", help="is the run complete? exit 0 yes, 3 no (resubmit)")
    status.add_argument("run_file")
    status.set_defaults(func=cmd_status)
    info = sub.add_parser("info", help="show metadata of lqcdflow files, verify checksums")
    info.add_argument("files", nargs="+", metavar="FILE.h5")
    info.set_defaults(func=cmd_info)
    analyze = sub.add_parser("analyze", help="error analysis of ensemble files (Gamma method)")
    add_analyze_arguments(analyze)
    analyze.set_defaults(func=cmd_analyze)
    return parser


def main(argv=None):
    args = make_parser().parse_args(argv)
    from mpi4py import MPI

    from lqcdflow.parallel.comm import guarded

    comm = MPI.COMM_WORLD
    try:
        return guarded(lambda: args.func(args, comm), comm, USER_ERRORS)
    except BrokenPipeError:  # output piped into a reader that closed early (e.g. head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
