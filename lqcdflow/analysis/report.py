"""The results of an analysis as a text report (tables) or a JSON document."""

import math

def format_table(rows, title=""):
    """Rows of (label, Estimate) as an aligned text table."""
    width = max([len("observable")] + [len(label) for label, _ in rows])
    lines = [title] if title else []
    lines.append(f"{'observable':<{width}s} {'value':>14s} {'error':>11s} {'tau_int':>8s} "
                 f"{'+-':>6s} {'N_eff':>8s}")
    for label, e in rows:
        lines.append(f"{label:<{width}s} {e.value:>14.8g} {e.error:>11.3g} {e.tau_int:>8.2f} "
                     f"{e.tau_int_error:>6.2f} {e.n_effective:>8.0f}")
    return "\n".join(lines)


def format_correlator(points):
    """The correlator points as a table of t, C(t), its error and tau_int, m_eff(t), error."""
    lines = [f"{'t':>3s} {'C(t)':>14s} {'error':>11s} {'tau_int':>8s} {'m_eff(t)':>14s} "
             f"{'error':>11s}"]
    for p in points:
        c = p.C.estimate
        line = f"{p.t:>3d} {c.value:>14.8g} {c.error:>11.3g} {c.tau_int:>8.2f}"
        if p.m_eff is not None:
            line += f" {p.m_eff.estimate.value:>14.8g} {p.m_eff.estimate.error:>11.3g}"
        lines.append(line)
    return "\n".join(lines)


def describe_replica(r):
    """One line: a replica's files, trajectories, cut and measurements kept."""
    first, last = r.trajectories
    return (f"replica {r.name}: {' + '.join(r.files)}, trajectories {first}..{last}, "
            f"thermalisation cut at trajectory {r.thermalization} ({r.thermalization_source}), "
            f"{r.n_kept} measurements")


def describe_ensemble(ensemble):
    """One line: theory parameters, lattice and volume."""
    theory = dict(ensemble.theory)
    name, form = theory.pop("name", "theory"), theory.pop("form", None)
    if form:
        name += f" {form} form"
    couplings = ", ".join(f"{k} = {v}" for k, v in theory.items())
    lattice = "x".join(str(n) for n in ensemble.shape)
    return f"{name}: {couplings}; lattice {lattice}, V = {ensemble.volume}"


def text(ensemble, results, S, plots=()):
    """The full text report: ensemble, replicas, tables, notes and the figures written."""
    interval = ensemble.measurement_interval
    lines = [describe_ensemble(ensemble)]
    lines += [describe_replica(r) for r in ensemble.replicas]
    every = "every trajectory" if interval == 1 else f"every {interval} trajectories"
    lines.append(f"Gamma method, S = {S:g}; tau_int and N_eff count samples: measurements "
                 f"({every}), or trajectories for acceptance and exp(-dH)")
    lines += ["", format_table([(r.label, r.estimate) for r in results.rows])]
    if results.correlator:
        lines += ["", "correlator C(t) and effective mass", format_correlator(results.correlator)]
    if results.notes or plots:
        lines += [""] + list(results.notes) + [f"figure: {path}" for path in plots]
    return "\n".join(lines)


def _number(x):
    """A float for JSON: NaN and infinities become None."""
    return float(x) if math.isfinite(x) else None


def estimate_dict(e):
    return {"value": _number(e.value), "error": _number(e.error), "tau_int": _number(e.tau_int),
            "tau_int_error": _number(e.tau_int_error), "n_samples": e.n_samples,
            "n_eff": _number(e.n_effective), "window": e.window}


def document(ensemble, results, S, plots=()):
    """The report as a JSON-serialisable dict (see docs/analysis.md for the keys)."""
    return {
        "files": ensemble.files,
        "lattice": {"shape": list(ensemble.shape), "volume": ensemble.volume},
        "theory": ensemble.theory,
        "replicas": [{"name": r.name, "files": list(r.files), "trajectories": list(r.trajectories),
                      "thermalization": r.thermalization,
                      "thermalization_source": r.thermalization_source,
                      "n_measurements": r.n_kept}
                     for r in ensemble.replicas],
        "gamma_method": {"S": S, "measurement_interval": ensemble.measurement_interval},
        "observables": {r.name: {"label": r.label, "kind": r.kind, **estimate_dict(r.estimate)}
                        for r in results.rows},
        "correlator": [{"t": p.t, "C": estimate_dict(p.C.estimate),
                        "m_eff": None if p.m_eff is None else estimate_dict(p.m_eff.estimate)}
                       for p in results.correlator],
        "notes": list(results.notes),
        "figures": list(plots),
    }
