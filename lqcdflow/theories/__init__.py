"""Lattice theories and their registry.

A theory is one module here with

- ``KEYS``: its [theory] run-file keys besides ``name`` ({key: lqcdflow.schema.Key});
- ``check(values, given, ndim)``: checks across keys (raise ConfigError);
- ``make(settings, lattice)``: the :class:`~lqcdflow.theories.base.Theory` of the [theory]
  settings on a lattice;
- ``quantities(theory, shape, measured, has)``: the analysis of its observables, as
  (primary, derived, notes), see :mod:`lqcdflow.analysis.observables`;
- ``ALGORITHMS``: the [sampler] algorithms that sample it (``hmc`` needs its ``force``; the
  local updates ``metropolis`` and ``heatbath`` need the methods of the local-update protocol,
  see :mod:`lqcdflow.mc.local`);
- ``REQUIRED``: the measured series its analysis cannot do without; ``THERMALIZATION``: the
  series from which ``analyze -t auto`` detects the thermalisation cut; ``CORRELATOR``: True
  if it measures a time-slice correlator ``correlator`` (C(t), m_eff and xi_2nd then);
- with ``nmcmc`` in ALGORITHMS, ``FLOW_COUPLINGS``: the [flow] couplings its flows accept, the
  default first;
- optionally ``MEASUREMENT_KEYS``: [theory] keys that change only what is measured, not the
  ensemble (``lqcdflow measure`` may use other values than the run that stored the
  configurations);
- ``PLOTS``: the series the analysis plots: {"history": ((series, power of V, label, result),
  ...), "autocorrelation": (result, ...), "histogram": (series, power of V, label)};

and one entry in THEORIES. io/, analysis/, parallel/, mc/ and the runner name no theory; the
run-file edge (config.py) names phi^4 and U(1) only where their flows and diffusion models
require it.
"""

import importlib

THEORIES = {"phi4": "lqcdflow.theories.phi4", "ising": "lqcdflow.theories.ising",
            "u1": "lqcdflow.theories.u1", "su2": "lqcdflow.theories.sun",
            "su3": "lqcdflow.theories.sun"}
DEFAULT = "phi4"  # run files without [theory] name are phi^4 (those written before U(1))


def module(name):
    """The module of theory ``name`` (a key of THEORIES)."""
    return importlib.import_module(THEORIES[name])
