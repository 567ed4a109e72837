"""Command line: ``lqcdflow run|train|sample|measure|convert|status|stop|info|analyze``.

This layer only reads arguments, builds objects and calls the library. ``run``, ``train``,
``sample``, ``measure`` and ``convert`` run on the ranks of MPI_COMM_WORLD; ``status``,
``stop``, ``info`` and ``analyze`` are serial tools that never initialise MPI (run them without
mpiexec, e.g. on a login node). Exit codes:
0 done; 1 ``info`` found a checksum mismatch (or an MPI abort); 2 the input cannot be used
(run file, process grid, output file, checkpoints: one line on stderr, every rank exits);
3 a run (or training) stopped early on a signal, a stop request or the walltime, with a
checkpoint (or the flow state) written: resubmit it.
Any other exception on any rank aborts the whole MPI job with its traceback.
"""

import argparse
import math
import os
import signal
import sys
from functools import partial

import lqcdflow
from lqcdflow.analysis import AnalysisError
from lqcdflow.analysis.command import add_arguments as add_analyze_arguments
from lqcdflow.backend import BackendError
from lqcdflow.config import RUN_ALGORITHMS, TRAINED_ALGORITHMS, ConfigError, parse
from lqcdflow.exitcodes import EXIT_CORRUPT, EXIT_RESUBMIT, EXIT_USAGE, error_line
from lqcdflow.io.checkpoint import CheckpointError
from lqcdflow.io.ensemble import OutputError
from lqcdflow.io.info import InfoError
from lqcdflow.mc.driver import DivergenceError
from lqcdflow.mc.stop import STOP_SIGNALS, SetupInterrupted, StopSignals, setup_interrupted_line
from lqcdflow.parallel.grid import GridError

USER_ERRORS = (ConfigError, GridError, OutputError, BackendError, AnalysisError,
               CheckpointError, InfoError, DivergenceError)


def read_run_file(path, comm=None):
    """Rank 0 of ``comm`` (None: this process alone) reads the run file and broadcasts its
    text, so every rank validates the same."""
    text, error = None, None
    if comm is None or comm.Get_rank() == 0:
        try:
            text = _run_file_text(path)
        except FileNotFoundError:
            error = f"run file {path} not found"
        except IsADirectoryError:
            error = f"run file {path} is a directory"
        except OSError as e:
            error = f"cannot read run file {path}: {e.strerror or e}"
        except ValueError as e:
            error = f"run file {path} {e}"
    if comm is not None:
        text, error = comm.bcast((text, error), root=0)
    if error:
        raise ConfigError(error)
    return parse(text, path), text


RUN_FILE_LIMIT = 1 << 20  # bytes: a run file is a page of TOML, never a data file


def _run_file_text(path):
    """The text of a run file; ValueError (completing "run file PATH ...") if it is not one.

    A UTF-8 byte-order mark, which some editors write, is dropped.
    """
    with open(path, "rb") as f:
        data = f.read(RUN_FILE_LIMIT + 1)
    if data.startswith(b"\x89HDF"):
        raise ValueError("is an HDF5 file, not a TOML run file")
    if len(data) > RUN_FILE_LIMIT:
        raise ValueError(f"is larger than {RUN_FILE_LIMIT} bytes: not a run file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"is not UTF-8 text (byte {e.start})") from None


def walltime_seconds(text):
    """argparse type of --walltime: a finite number of seconds >= 0 (0: no limit)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def _start(args, comm, algorithms):
    """The run file with the command line's overrides, and the progress printer (rank 0).

    ``algorithms``: the [sampler] algorithms this command runs, with the command that runs
    each of the others.
    """
    config, text = read_run_file(args.run_file, comm)
    algorithm = config.sampler.algorithm
    if algorithm not in algorithms:
        other = ("lqcdflow train, then lqcdflow sample" if algorithm in TRAINED_ALGORITHMS
                 else "lqcdflow run")
        raise ConfigError(f"lqcdflow {args.command} does not run [sampler] algorithm = "
                          f"'{algorithm}'; use {other}")
    _check_paths(args, config, comm)
    if args.restart is not None:
        config = config.replace("checkpoint", restart=args.restart)
    if args.walltime is not None:
        config = config.replace("checkpoint", walltime=args.walltime)
    # flushed at once: batch logs and pipes must show progress while the job runs
    say = partial(print, flush=True) if comm.Get_rank() == 0 and not args.quiet else None
    if say:
        say(f"lqcdflow {lqcdflow.__version__} on {comm.Get_size()} rank(s): "
            f"theory {config.sections()['theory']}, lattice {config.sections()['lattice']}")
    return config, text, say


def _check_paths(args, config, comm):
    """The paths ``lqcdflow run|train|sample`` will write, checked before anything is
    (lqcdflow.io.paths)."""
    from lqcdflow.io import paths
    from lqcdflow.runner import outputs

    reads = [(args.run_file, "run file"),
             (getattr(config.run, "start_file", ""), "start configuration")]
    trained = config.trained
    what = f"{config.trained_name} state"
    if config.diffusion:  # learnt from: an output must never overwrite it
        reads.append((config.diffusion.data, "[diffusion] data"))
    if args.command == "train":
        writes = [(trained.state, what, "file")]
    else:
        writes = outputs(config)
        if trained:
            reads.append((trained.state, what))
    paths.check(comm, writes, reads)


def _print_table(config, comm):
    """The analysis table of the ensemble just written (rank 0)."""
    from lqcdflow.analysis.summary import format_table, summarize

    output, sampler = config.output, config.sampler
    if comm.Get_rank() != 0:
        return
    try:
        rows = summarize(output.file, sampler.n_thermalization)
    except AnalysisError as e:  # the ensemble is written; only the table is impossible
        print(f"no table of results: {e}")
    else:
        print(format_table(rows, title=f"{output.file}: trajectories after "
                           f"{sampler.n_thermalization}"))


def _stop_rule(args, comm, signals):
    """The stop rule of ``lqcdflow run|train|sample``: the signals, and the stop request file
    of the run file (``lqcdflow stop``)."""
    from lqcdflow.mc.stop import StopRule, request_path

    return StopRule(comm, signals, request_path(args.run_file))


def cmd_run(args, comm, signals):
    """Generate or continue an ensemble with HMC, Langevin or local updates as the run file
    says."""
    from lqcdflow.runner import run_ensemble

    stop_rule = _stop_rule(args, comm, signals)  # the walltime clock starts here
    config, text, say = _start(args, comm, RUN_ALGORITHMS)
    code = run_ensemble(config, text, comm, stop_rule, say)
    _print_table(config, comm)
    return code


def cmd_train(args, comm, signals):
    """Train or continue training the run file's flow (algorithm = "nmcmc") or diffusion
    model (algorithm = "diffusion")."""
    stop_rule = _stop_rule(args, comm, signals)
    config, _, say = _start(args, comm, tuple(TRAINED_ALGORITHMS))
    from lqcdflow.flows.run import run_training  # torch: imported only for flows

    return run_training(config, comm, stop_rule, say)


def cmd_sample(args, comm, signals):
    """Generate or continue the ensemble of the trained model's chain (algorithm = "nmcmc" or
    "diffusion")."""
    stop_rule = _stop_rule(args, comm, signals)
    config, text, say = _start(args, comm, tuple(TRAINED_ALGORITHMS))
    from lqcdflow.flows.run import run_sampling

    code = run_sampling(config, text, comm, stop_rule, say)
    _print_table(config, comm)
    return code


def cmd_measure(args, comm):
    """Measure the observables of the run's stored configurations into another file."""
    from lqcdflow.analysis.summary import format_table, summarize
    from lqcdflow.io import paths
    from lqcdflow.measure import measure_configurations

    config, text = read_run_file(args.run_file, comm)
    paths.check(comm, [(args.output, "output file", "file")],
                [(args.run_file, "run file"),
                 (config.output.configurations, "configuration file of the run"),
                 (config.output.file, "output file of the run"),
                 (config.checkpoint.directory, "checkpoint directory of the run")])
    say = partial(print, flush=True) if comm.Get_rank() == 0 and not args.quiet else None
    code = measure_configurations(config, text, comm, args.output, args.overwrite, say)
    if comm.Get_rank() == 0:
        try:
            rows = summarize(args.output, config.sampler.n_thermalization)
        except AnalysisError as e:
            print(f"no table of results: {e}")
        else:
            print(format_table(rows, title=f"{args.output}: configurations after trajectory "
                               f"{config.sampler.n_thermalization}"))
    return code


def cmd_convert(args, comm):
    """Convert an SU(3) configuration between lqcdflow, ILDG and openQCD files."""
    from lqcdflow.convert import convert

    say = partial(print, flush=True) if comm.Get_rank() == 0 and not args.quiet else None
    return convert(args.source, args.target, args.to, comm, args.index, args.overwrite, say)


def _training_status(config):
    """(line, complete) of the model's training: the step of the state file of ``steps``."""
    from lqcdflow.io.flow_states import trained_step

    path, steps = config.trained.state, config.trained.steps
    done = trained_step(path)
    if done is None:
        return f"training step 0 of {steps} (no {config.trained_name} state {path})", False
    return f"training step {done} of {steps} ({path})", done >= steps


def cmd_status(args):
    """Exit 0 if the run file's chain (or with --train its flow training) is complete,
    EXIT_RESUBMIT if it is not (serial).

    For job scripts: launchers do not all pass the ranks' exit code on (MPICH's mpiexec
    returns 0 after forwarding a signal, or when its stdin is /dev/null).
    """
    from lqcdflow.io.checkpoint import newest_trajectory

    config, _ = read_run_file(args.run_file)
    flows = config.trained is not None
    if args.train and not flows:
        raise ConfigError("lqcdflow status --train needs [sampler] algorithm = 'nmcmc' or "
                          "'diffusion'")
    if flows:
        line, trained = _training_status(config)
        print(line)
        if args.train:
            return 0 if trained else EXIT_RESUBMIT
    target = config.sampler.n_trajectories
    done, path = newest_trajectory(config.checkpoint.directory)
    print(f"trajectory {done} of {target}" + (f" ({path})" if path else " (no checkpoint)"))
    _print_stop_request(args.run_file)
    return 0 if done >= target else EXIT_RESUBMIT


def _print_stop_request(run_file):
    """The line of ``lqcdflow status`` on a stop request of the chain, if there is one."""
    from lqcdflow.mc.stop import request_path

    path = request_path(run_file)
    try:
        with open(path, errors="replace") as f:
            text = f.read(1000).strip()
    except FileNotFoundError:
        return
    except OSError as e:
        text = f"unreadable: {e.strerror or e}"
    print(f"{path}: {text or 'stop requested'}")


def cmd_stop(args):
    """Ask the run file's chain to stop for good (serial): see lqcdflow.mc.stop."""
    from lqcdflow.mc.stop import request_stop

    read_run_file(args.run_file)  # a typo in the name must not pass for a stop
    try:
        path = request_stop(args.run_file)
    except OSError as e:
        raise OutputError(f"cannot write the stop request next to {args.run_file}: "
                          f"{e.strerror or e}") from None
    print(f"stop requested ({path}): a running lqcdflow run, train or sample of "
          f"{args.run_file} stops after its current trajectory or training step, with a "
          "checkpoint (exit 3), and the chain's batch jobs do not resubmit themselves. To "
          "resume, submit the job script again (a new chain withdraws the request) or start "
          "lqcdflow by hand; to withdraw the request, remove the file.")
    return 0


def cmd_info(args):
    """Print what lqcdflow files hold and verify their checksums (serial)."""
    from lqcdflow.io.info import inspect

    corrupt = []
    for path in args.files:
        lines, bad = inspect(path)
        print("\n".join(lines))
        corrupt += bad
    if corrupt:
        print(f"lqcdflow: error: checksum mismatch in {', '.join(corrupt)}", file=sys.stderr)
        return EXIT_CORRUPT
    return 0


def cmd_analyze(args):
    """Gamma-method analysis of ensemble files (serial)."""
    from lqcdflow.analysis.command import run

    return run(args)


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in lqcdflow's one-line format (``lqcdflow: error: ...``),
    exit code EXIT_USAGE; subcommands' parsers are of this class too."""

    def error(self, message):
        self.exit(EXIT_USAGE, error_line(f"{message}; see {self.prog} --help") + "\n")


def make_parser():
    parser = _Parser(prog="lqcdflow", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=lqcdflow.__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="generate an ensemble with HMC from a TOML run file")
    train = sub.add_parser("train", help="train the run file's normalizing flow")
    sample = sub.add_parser("sample", help="generate an ensemble with the trained flow")
    for command, func, unit in ((run, cmd_run, "trajectory"), (train, cmd_train, "step"),
                                (sample, cmd_sample, "trajectory")):
        command.add_argument("run_file")
        command.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
        command.add_argument("--restart", choices=("auto", "never"),
                             help="override [checkpoint] restart")
        command.add_argument("--walltime", type=walltime_seconds, metavar="SECONDS",
                             help="override [checkpoint] walltime (seconds this job may run; "
                             f"stops after the current {unit}, exit 3)")
        command.set_defaults(func=func)
    measure = sub.add_parser("measure", help="measure the stored configurations of a run "
                             "(e.g. the Wilson flow) into an ensemble file")
    measure.add_argument("run_file")
    measure.add_argument("output", metavar="OUTPUT.h5")
    measure.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    measure.add_argument("--overwrite", action="store_true", help="replace OUTPUT.h5")
    measure.set_defaults(func=cmd_measure)
    convert = sub.add_parser("convert", help="convert an SU(3) configuration between lqcdflow, "
                             "ILDG and openQCD files")
    convert.add_argument("source", help="lqcdflow configurations file, ILDG or openQCD file")
    convert.add_argument("target")
    convert.add_argument("--to", required=True, choices=("lqcdflow", "ildg", "openqcd"),
                         help="format of the target")
    convert.add_argument("--index", type=int, default=-1,
                         help="configuration of an lqcdflow source (default -1: the last)")
    convert.add_argument("--overwrite", action="store_true", help="replace the target")
    convert.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    convert.set_defaults(func=cmd_convert)
    status = sub.add_parser("status", help="is the run complete? exit 0 yes, 3 no (resubmit)")
    status.add_argument("run_file")
    status.add_argument("--train", action="store_true",
                        help="is the flow training complete? (algorithm = 'nmcmc')")
    status.set_defaults(func=cmd_status)
    stop = sub.add_parser("stop", help="stop the run file's chain: the running command "
                          "checkpoints and its batch job does not resubmit itself")
    stop.add_argument("run_file")
    stop.set_defaults(func=cmd_stop)
    info = sub.add_parser("info", help="show metadata of lqcdflow files, verify checksums")
    info.add_argument("files", nargs="+", metavar="FILE.h5")
    info.set_defaults(func=cmd_info)
    analyze = sub.add_parser("analyze", help="error analysis of ensemble files (Gamma method)")
    add_analyze_arguments(analyze)
    analyze.set_defaults(func=cmd_analyze)
    return parser


SERIAL_COMMANDS = (cmd_status, cmd_stop, cmd_info, cmd_analyze)
STOPPABLE_COMMANDS = (cmd_run, cmd_train, cmd_sample)  # they checkpoint on a stop signal


def main(argv=None, early=None, inherited=None):
    """The command line; returns the exit code.

    ``early``: the stop signals that arrived before this was called (a list, possibly empty,
    from the entry point lqcdflow.__main__, whose handlers noted them); None when called as a
    library, which leaves the signal handlers alone. ``inherited``: {signal: the handler the
    process started with} (from the entry point), restored for the commands that do not stop
    in order.
    """
    args = make_parser().parse_args(argv)
    if early is not None and args.func not in STOPPABLE_COMMANDS:
        _started_signal_handlers(early, inherited or {})
    try:
        if args.func in SERIAL_COMMANDS:
            try:
                return args.func(args)
            except USER_ERRORS as e:
                print(error_line(e), file=sys.stderr)
                return EXIT_USAGE
        if args.func in STOPPABLE_COMMANDS:
            # The handlers come first and stay to the end: a signal while MPI starts, while
            # the run sets up, runs or prints its table must not kill it.
            with StopSignals(early or ()) as signals:
                return _on_ranks(args, signals)
        return _on_ranks(args)
    except SetupInterrupted as e:  # before MPI was initialised, or while it was
        print(setup_interrupted_line(e), file=sys.stderr, flush=True)
        _abort_if_mpi_started(EXIT_RESUBMIT)
        return EXIT_RESUBMIT
    except BrokenPipeError:  # output piped into a reader that closed early (e.g. head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _started_signal_handlers(early, inherited):
    """For the commands that do not stop in order: the handlers of the stop signals the process
    started with (``inherited``; else the usual ones), so that one the caller ignores stays
    ignored (the job scripts' queries of `lqcdflow status` under `scancel --full`), and a
    signal that came before them acted on now."""
    for sig in STOP_SIGNALS:
        usual = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        signal.signal(sig, inherited.get(sig, usual))
    for sig in early:
        signal.raise_signal(sig)


def _abort_if_mpi_started(code):
    """End every rank of an MPI job that has started (the others may wait in MPI_Init or a
    collective call for this one)."""
    mpi = sys.modules.get("mpi4py.MPI")
    if (mpi and mpi.Is_initialized() and not mpi.Is_finalized()
            and mpi.COMM_WORLD.Get_size() > 1):
        mpi.COMM_WORLD.Abort(code)


def _on_ranks(args, *signals):
    """Run ``args.func`` on the ranks of MPI_COMM_WORLD (initialising MPI), guarded."""
    from mpi4py import MPI

    from lqcdflow.parallel import launch
    from lqcdflow.parallel.comm import guarded

    comm = MPI.COMM_WORLD

    def work():
        launch.check(comm)  # before any copy of a duplicated launch touches a file
        return args.func(args, comm, *signals)

    return guarded(work, comm, USER_ERRORS)
