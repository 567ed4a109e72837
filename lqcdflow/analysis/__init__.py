"""Error analysis of ensembles (Wolff's Gamma method through pyerrors).

Modules, one job each:

    gamma           Gamma-method estimates (value, error, tau_int, N_eff) of pyerrors Obs
    series          in-memory Monte Carlo series of an ensemble (replicas), thermalisation cut
    read            ensemble files -> series: replicas, continuation segments, consistency
    thermalization  automatic detection of the thermalisation cut
    observables     primary and derived observables (chi, Binder ratio, d<A>/d kappa, ...)
    correlator      time-slice correlator, effective mass, second-moment correlation length
    report          the text table and the JSON document
    plots           PNG figures (Monte Carlo histories, autocorrelation, histogram, m_eff)
    command         ``lqcdflow analyze``
    summary         the table ``lqcdflow run`` prints at its end

Importing this package is cheap; pyerrors and matplotlib are imported by the modules that
need them.
"""


class AnalysisError(ValueError):
    """Ensembles that cannot be analysed as given; the message is one line saying why."""
