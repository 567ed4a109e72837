"""The table ``lqcdflow run`` prints at its end: the analysis of the ensemble just written."""

from lqcdflow.analysis import read, results
from lqcdflow.analysis.gamma import MIN_SAMPLES
from lqcdflow.analysis.report import format_table  # noqa: F401  (used by lqcdflow.cli)
from lqcdflow.analysis.thermalization import choose


def summarize(path, n_thermalization):
    """[(label, Estimate)] of the primary and derived observables of the ensemble file.

    Trajectories <= n_thermalization are dropped. Raises AnalysisError if fewer than
    MIN_SAMPLES (5, the least pyerrors takes; ``lqcdflow analyze`` asks for more)
    measurements remain.
    """
    ensemble = choose(read.load([path]), n_thermalization)
    ensemble.check(MIN_SAMPLES, MIN_SAMPLES)
    return [(row.label, row.estimate) for row in results.analyze(ensemble).rows]
