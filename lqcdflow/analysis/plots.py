"""PNG figures of an analysis (matplotlib, Agg canvas; imported only when plotting).

    history.png          Monte Carlo histories of the theory's main series (phi^4: S/V, M/V,
                         M^2/V; U(1): plaquette, Q) and Delta H, replicas one after another,
                         the thermalisation cut shaded, the mean +- error
    autocorrelation.png  normalised autocorrelation function rho(t) and tau_int(W) with its
                         error for the theory's main results (phi^4: <S>/V, <|M|>/V, chi, U;
                         U(1): plaquette, Q, chi_t), the chosen window W marked
    histogram_<x>.png    histogram of the theory's order parameter after thermalisation
                         (phi^4: M/V, 2D U(1): Q), with the Gaussian of the same mean and
                         variance
    effective_mass.png   C(t) (log scale) and m_eff(t) with errors, where C(t) is measured

Which series each theory plots is its module's ``PLOTS`` (see :mod:`lqcdflow.theories`);
series an ensemble does not hold are left out.
"""

import os

import numpy as np

from lqcdflow.analysis.gamma import autocorrelation
from lqcdflow.analysis.observables import theory_module

DPI = 100


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _shifts(ensemble):
    """Shifts of the trajectory axis that put the replicas one after another."""
    shifts, end = [], None
    for r in ensemble.replicas:
        first, last = r.trajectories
        shifts.append(0 if end is None else end + 1 - first)
        end = last + shifts[-1]
    return shifts


def _mark_thermalization(ax, ensemble, shifts):
    label = "thermalisation cut"
    for i, (r, shift) in enumerate(zip(ensemble.replicas, shifts)):
        first = r.trajectories[0]
        if i:
            ax.axvline(first + shift - 0.5, color="k", lw=0.8)  # replica boundary
        if r.thermalization >= first:
            ax.axvspan(first + shift, r.thermalization + shift, color="0.85", zorder=0)
            ax.axvline(r.thermalization + shift, color="0.3", ls="--", lw=1, label=label)
            label = None  # in the legend once


def _mark_mean(ax, estimate):
    ax.axhline(estimate.value, color="k", lw=1.2, label="mean $\\pm$ error")
    ax.axhspan(estimate.value - estimate.error, estimate.value + estimate.error, color="k",
               alpha=0.2, lw=0)


def history(ensemble, results):
    """Figure: Monte Carlo histories, one panel per series, thermalisation cut shaded.

    Replicas are drawn one after another, each in its colour, the trajectory axis shifted.
    """
    panels = [p for p in theory_module(ensemble).PLOTS["history"] if ensemble.has(p[0])]
    if ensemble.has("delta_H"):
        panels.append(("delta_H", 0, "$\\Delta H$", None))
    figure = _figure(10, 2.2 * len(panels))
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    V = ensemble.volume
    shifts = _shifts(ensemble)
    for ax, (name, power, ylabel, result) in zip(axes, panels):
        for i, (r, shift) in enumerate(zip(ensemble.replicas, shifts)):
            x, y = ((r.mc_trajectory, r.mc[name]) if name in r.mc
                    else (r.trajectory, r.observables[name] / V**power))
            ax.plot(x + shift, y, lw=0.5, color=f"C{i}", label=f"replica {r.name}")
        _mark_thermalization(ax, ensemble, shifts)
        if result in results:
            _mark_mean(ax, results[result].estimate)
        ax.set_ylabel(ylabel)
    axes[0].legend(loc="upper right", fontsize="small", ncols=4)
    axes[-1].set_xlabel("trajectory" if len(shifts) == 1 else "trajectory (replicas in turn)")
    return figure


def autocorrelations(ensemble, results):
    """Figure: rho(t) (top) and tau_int(W) (bottom) per observable, window W marked."""
    rows = [results[name] for name in theory_module(ensemble).PLOTS["autocorrelation"]
            if name in results]
    figure = _figure(3.2 * len(rows), 5.5)
    axes = figure.subplots(2, len(rows), squeeze=False)
    for (top, bottom), row in zip(axes.T, rows):
        top.set_title(row.label, fontsize="medium")
        top.set_xlabel("$t$")
        bottom.set_xlabel("$W$")
        top.set_ylabel("$\\rho(t)$")
        bottom.set_ylabel("$\\tau_\\mathrm{int}(W)$")
        a = autocorrelation(row.obs)
        if a is None:
            top.text(0.5, 0.5, "constant series", ha="center", transform=top.transAxes)
            continue
        t = np.arange(min(len(a.rho), max(3 * a.window, 10) + 1))
        top.plot(t, a.rho[t], "o-", ms=3, lw=1)
        top.axhline(0, color="0.5", lw=0.8)
        bottom.plot(t, a.tau_int[t], lw=1)
        bottom.fill_between(t, a.tau_int[t] - a.tau_int_error[t],
                            a.tau_int[t] + a.tau_int_error[t], alpha=0.3, lw=0)
        e = row.estimate
        bottom.errorbar([a.window], [e.tau_int], yerr=[e.tau_int_error], fmt="o", color="C3",
                        capsize=3, label=f"$\\tau_\\mathrm{{int}} = {e.tau_int:.3g}$")
        for ax in (top, bottom):
            ax.axvline(a.window, color="C3", ls="--", lw=1, label=f"$W = {a.window}$")
        top.legend(fontsize="small")
        bottom.legend(fontsize="small", loc="lower right")
    return figure


def histogram(ensemble):
    """Figure: histogram of the theory's order parameter after thermalisation with the
    matching Gaussian; None where the ensemble has no such series."""
    name, power, label = theory_module(ensemble).PLOTS["histogram"]
    if not ensemble.has(name):
        return None
    V = ensemble.volume
    m = np.concatenate([r.observables[name] for r in ensemble.after_thermalization().replicas])
    m = m / V**power
    figure = _figure(6, 4)
    ax = figure.subplots()
    ax.hist(m, bins="auto", density=True, alpha=0.6, label=f"{m.size} measurements")
    mu, sigma = m.mean(), m.std()
    if sigma > 0:
        x = np.linspace(m.min(), m.max(), 200)
        ax.plot(x, np.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi)),
                color="k", lw=1, label="Gaussian, same mean and variance")
    ax.set_xlabel(label)
    ax.set_ylabel("probability density")
    ax.legend(fontsize="small")
    return figure


def effective_mass(results):
    """Figure: C(t) on a log scale (positive points) and m_eff(t), with errors; or None."""
    if not results.correlator:
        return None
    figure = _figure(10, 4)
    left, right = figure.subplots(1, 2)
    c = [(p.t, p.C.estimate) for p in results.correlator if p.C.estimate.value > 0]
    left.errorbar([t for t, _ in c], [e.value for _, e in c], yerr=[e.error for _, e in c],
                  fmt="o", capsize=3)
    left.set_yscale("log")
    left.set_ylabel("$C(t)$")
    m = [(p.t, p.m_eff.estimate) for p in results.correlator if p.m_eff is not None]
    right.errorbar([t for t, _ in m], [e.value for _, e in m], yerr=[e.error for _, e in m],
                   fmt="o", capsize=3)
    right.set_ylabel("$m_\\mathrm{eff}(t)$")
    for ax in (left, right):
        ax.set_xlabel("$t$")
        ax.set_xlim(-0.5, results.correlator[-1].t + 0.5)
        ax.xaxis.get_major_locator().set_params(integer=True)
    return figure


def write(ensemble, results, directory):
    """Write the figures into ``directory`` (created if needed); returns their paths."""
    os.makedirs(directory, exist_ok=True)
    figures = {"history.png": history(ensemble, results),
               "autocorrelation.png": autocorrelations(ensemble, results),
               f"histogram_{theory_module(ensemble).PLOTS['histogram'][0]}.png":
                   histogram(ensemble),
               "effective_mass.png": effective_mass(results)}
    paths = []
    for name, figure in figures.items():
        if figure is not None:
            path = os.path.join(directory, name)
            figure.savefig(path)
            paths.append(path)
    return paths
