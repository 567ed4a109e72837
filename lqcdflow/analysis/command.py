"""``lqcdflow analyze ENSEMBLE.h5 [more.h5 ...]``: Gamma-method analysis of ensemble files.

Reads the files (replicas and continuation segments, see :mod:`lqcdflow.analysis.read`),
drops thermalisation (the run file's cut, a given one, or a detected one), and prints the
table of primary and derived observables and the correlator, or ``--json``; ``--plot DIR``
writes the figures. Only argparse is imported at module level, so the CLI starts fast.
"""

import argparse
import json

MIN_SAMPLES = 100  # in all replicas together, after thermalisation
MIN_REPLICA_SAMPLES = 10  # in each replica


def thermalization_setting(text):
    """argparse type of --thermalization: "auto" or an integer >= 0."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 0, got {text!r}")
    return value


def positive_float(text):
    """argparse type of --S: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def add_arguments(parser):
    """The arguments of ``lqcdflow analyze``."""
    parser.add_argument("files", nargs="+", metavar="ENSEMBLE.h5",
                        help="ensemble files: replicas and/or continuation segments of one run")
    parser.add_argument("-t", "--thermalization", type=thermalization_setting, metavar="N|auto",
                        help="drop trajectories <= N, or detect the cut per replica ('auto'); "
                             "default: the run file's sampler.n_thermalization")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--plot", metavar="DIR", help="write PNG figures into DIR")
    parser.add_argument("--S", type=positive_float, default=2.0,
                        help="Gamma-method window parameter S (default 2)")


def analyze_files(paths, thermalization=None, S=2.0, plot_dir=None):
    """Read, cut, check and analyse ensemble files; write figures if ``plot_dir``.

    Returns (Ensemble with its cuts, Results, list of figure paths). Raises AnalysisError.
    """
    from lqcdflow.analysis import plots, read, results
    from lqcdflow.analysis.thermalization import choose

    ensemble = choose(read.load(paths), thermalization, S)
    ensemble.check(MIN_SAMPLES, MIN_REPLICA_SAMPLES)
    analysis = results.analyze(ensemble, S)
    figures = plots.write(ensemble, analysis, plot_dir) if plot_dir else []
    return ensemble, analysis, figures


def run(args):
    """Run ``lqcdflow analyze`` with parsed ``args``; prints the report, returns 0."""
    from lqcdflow.analysis import report

    ensemble, analysis, figures = analyze_files(args.files, args.thermalization, args.S,
                                                args.plot)
    if args.json:
        print(json.dumps(report.document(ensemble, analysis, args.S, figures), indent=2))
    else:
        print(report.text(ensemble, analysis, args.S, figures))
    return 0
