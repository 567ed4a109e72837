"""The table of results printed at the end of a run: primary and derived observables."""

import h5py
import numpy as np

from lqcdflow.analysis.gamma import estimate, observable


def load_series(path, n_thermalization):
    """Observable series of an ensemble file, thermalisation trajectories dropped.

    Returns (series dict, volume); series holds the observables/ datasets and the mc/
    ``accepted`` and ``exp_minus_delta_H`` series, each restricted to trajectories
    > n_thermalization.
    """
    with h5py.File(path, "r") as f:
        volume = int(f.attrs["volume"])
        keep = f["observables/trajectory"][:] > n_thermalization
        series = {name: f[f"observables/{name}"][:][keep] for name in f["observables"]
                  if name != "trajectory"}
        keep_mc = f["mc/trajectory"][:] > n_thermalization
        series["accepted"] = f["mc/accepted"][:][keep_mc].astype(np.float64)
        series["exp_minus_delta_H"] = np.exp(-f["mc/delta_H"][:][keep_mc])
    return series, volume


def summarize(path, n_thermalization):
    """[(label, Estimate)] for acceptance, <exp(-dH)>, <S>/V, <|m|>/V, chi, Binder ratio.

    chi = <M^2>/V, U = <M^4>/<M^2>^2 with M = sum_x phi_x (errors propagated by pyerrors).
    """
    series, volume = load_series(path, n_thermalization)
    m2 = observable(series["m2"])
    rows = [
        ("acceptance", estimate(observable(series["accepted"]))),
        ("<exp(-dH)>", estimate(observable(series["exp_minus_delta_H"]))),
        ("<S>/V", estimate(observable(series["action"]) / volume)),
        ("<|m|>/V", estimate(observable(series["abs_m"]) / volume)),
        ("chi = <m^2>/V", estimate(m2 / volume)),
        ("U = <m^4>/<m^2>^2", estimate(observable(series["m4"]) / m2**2)),
    ]
    return rows


def format_table(rows, title=""):
    """Rows of (label, Estimate) as an aligned text table."""
    lines = [title] if title else []
    lines.append(f"{'observable':<20s} {'value':>14s} {'error':>11s} {'tau_int':>8s} "
                 f"{'+-':>6s} {'N_eff':>8s}")
    for label, e in rows:
        lines.append(f"{label:<20s} {e.value:>14.8g} {e.error:>11.3g} {e.tau_int:>8.2f} "
                     f"{e.tau_int_error:>6.2f} {e.n_effective:>8.0f}")
    return "\n".join(lines)
