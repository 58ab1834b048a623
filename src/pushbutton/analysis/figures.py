"""Figures from the results table: line plots with error bars, phase diagrams, learning curves,
histograms. The `[[figures]]` declarations of a spec are read in figure_specs.py.

Figures are built with matplotlib's object API (`Figure`, never pyplot): no GUI backend is needed
or touched, nothing accumulates in pyplot's figure list, and Jupyter shows a returned figure once
(via `_repr_png_`). matplotlib is imported on first use so `import pushbutton` stays fast.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pushbutton.analysis import stats as A
from pushbutton.analysis.figure_base import (_empty, _fmt, _numeric_col, _style, _units,
                                             add_note, averaged_over, hue_scale, label,
                                             new_figure, notes, save, say_averaged)
from pushbutton.spec.figure_keys import ERRS
from pushbutton.analysis.phase import heatmap
from pushbutton.core import names as N

__all__ = ["line", "heatmap", "learning_curves", "histogram", "save", "notes", "new_figure",
           "label", "ERRS"]


def _bars(agg, m, err):
    mean = agg[f"{m}_mean"].to_numpy(float)
    if err == "sem":
        return mean, agg[f"{m}_sem"].to_numpy(float)
    if err == "std":
        return mean, agg[f"{m}_std"].to_numpy(float)
    if err == "ci":
        return mean, np.vstack([mean - agg[f"{m}_ci_low"], agg[f"{m}_ci_high"] - mean])
    return mean, None


def _err_label(err, ci, interval="t"):
    if err == "ci":
        return f"mean, {ci:.0%} Wilson interval" if interval == "wilson" else f"mean, {ci:.0%} CI"
    return {"sem": "mean ± s.e.m.", "std": "mean ± s.d.", "none": "mean"}[err]


def _err_sentence(err, ci, interval, what="Error bars"):
    """The caption's sentence: which error bars these are (they match the report's table)."""
    if err == "none":
        return "Points are means over replicates; no error bars."
    if err == "ci" and interval == "wilson":
        return (f"{what}: {ci:.0%} Wilson score interval of the rate over replicates (a 0/1 "
                "metric: it stays inside [0, 1]).")
    if err == "ci":
        return f"{what}: {ci:.0%} confidence interval of the mean over replicates (Student t)."
    if err == "sem":
        return f"{what}: ± 1 standard error of the mean over replicates."
    return f"{what}: ± 1 standard deviation over replicates."


def _default_err(df, metric, err):
    """err=None: the Wilson interval for a 0/1 metric (as the report's table shows it), else
    the standard error of the mean."""
    if err is None:
        binary = df is not None and metric in getattr(df, "columns", ()) and \
            A.is_binary(A._done(df, "done")[metric] if N.STATUS in df.columns else df[metric])
        return "ci" if binary else "sem"
    if err not in ERRS:
        raise ValueError(f"err must be one of {ERRS}, got {err!r}")
    return err


def _hue_groups(df, hue):
    if hue is None:
        return [(None, df)]
    return list(df.groupby(hue, sort=True, dropna=False))


def _continuous(groups, hue, df) -> bool:
    return hue is not None and len(groups) > 6 and _numeric_col(df[hue])


def _colors(groups, hue, df):
    """Colour per group: the default cycle for few/categorical values; for many numbers a
    colour scale over exactly the values' range (hue_scale), so the colorbar can be read."""
    if not _continuous(groups, hue, df):
        return [None] * len(groups)
    cmap, norm = hue_scale([float(k) for k, _ in groups])
    return [cmap(norm(float(k))) for k, _ in groups]


def _legend(fig, ax, groups, hue, df, units):
    """Legend for few hue values; a colorbar for many numeric ones (a 50-entry legend would
    crush the axes); the first 12 entries for many categories."""
    if hue is None or not groups:
        return
    if _continuous(groups, hue, df):
        from matplotlib.cm import ScalarMappable
        cmap, norm = hue_scale([float(k) for k, _ in groups])
        cb = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax)
        cb.set_label(label(hue, units))
        return
    handles, labels = ax.get_legend_handles_labels()
    more = len(handles) > 12
    ax.legend(handles[:12], labels[:12], frameon=False, fontsize=9 if not more else 8,
              title=f"first 12 of {len(handles)}" if more else None)


def line(df: pd.DataFrame, x: str, y: str, hue: str | None = None, err: str | None = None,
         ci: float = 0.95, units: dict | None = None, title: str | None = None,
         logx: bool = False, logy: bool = False, ax=None, status: str | None = "done"):
    """Mean of metric `y` against parameter `x` (one line per `hue` value), averaged over
    replicates (and any other parameter, which the figure then names), with error bars
    (err: sem | ci | std | none; default: the Wilson interval for a 0/1 metric, else sem)."""
    err = _default_err(df, y, err)
    units = _units(df, units)
    fig, ax = new_figure() if ax is None else (ax.figure, ax)
    with _style():
        by = [x] + ([hue] if hue else [])
        agg = A.aggregate(df, by=by, metrics=[y], ci=ci, quantiles=(), status=status)
        interval = agg.attrs["intervals"][y]
        agg = agg.dropna(subset=[f"{y}_mean"])
        if agg.empty:
            _empty(ax)
        groups = _hue_groups(agg, hue)
        for (key, part), color in zip(groups, _colors(groups, hue, agg)):
            part = part.sort_values(x)
            mean, e = _bars(part, y, err)
            lab = None if hue is None else f"{hue} = {_fmt(key)}"
            ax.errorbar(part[x].to_numpy(), mean, yerr=e, marker="o", capsize=3, label=lab,
                        color=color)
        ax.set_xlabel(label(x, units))
        ax.set_ylabel(label(y, units))
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        _legend(fig, ax, groups, hue, agg, units)
        add_note(fig, _err_sentence(err, ci, interval))
        _say_undrawn(fig, df, agg, x, hue)
        pad = say_averaged(fig, ax, averaged_over(A._done(df, status), [x, hue]))
        ax.set_title(title or f"{label(y)} vs {label(x)} ({_err_label(err, ci, interval)})",
                     pad=pad)
    return fig


def _say_undrawn(fig, df, agg, x, hue) -> None:
    """Points of the space that have tasks but no finished value are named in the caption,
    not silently left out (a hue value whose every task failed would just be missing)."""
    if N.STATUS not in df.columns or not len(df):
        return  # only finished rows were given: nothing is known of the others
    cols = [x] + ([hue] if hue else [])
    points = df[cols].drop_duplicates()
    drawn = agg[cols].drop_duplicates() if len(agg) else points.iloc[:0]
    merged = points.merge(drawn, on=cols, how="left", indicator=True)
    undrawn = merged[merged["_merge"] == "left_only"][cols]
    if not len(undrawn):
        return
    gone = [] if hue is None else [v for v in pd.unique(undrawn[hue])
                                   if not (drawn[hue] == v).any()]
    if gone:
        add_note(fig, f"Not drawn: {hue} = {', '.join(_fmt(v) for v in gone)} (no value: "
                      "every task failed or is not done; see Failures).")
    rest = len(undrawn) - (int(undrawn[hue].isin(gone).sum()) if gone else 0)
    if rest:
        add_note(fig, f"{rest} point{'s' * (rest != 1)} not drawn: no value there (tasks "
                      "failed, not done yet, or the value is NaN).")


def learning_curves(series: pd.DataFrame, metric: str, hue: str | None = None, x: str = N.STEP,
                    err: str | None = None, ci: float = 0.95, units: dict | None = None,
                    title: str | None = None, logx: bool = False, logy: bool = False, ax=None):
    """Per-step mean of `metric` over replicates (one curve per `hue` value), shaded error band."""
    err = _default_err(series, metric, err)
    units = _units(series, units)
    x = A.step_column(series, x)
    fig, ax = new_figure() if ax is None else (ax.figure, ax)
    interval, pad = "t", None
    with _style():
        if series is None or len(series) == 0 or metric not in series.columns:
            _empty(ax, "no per-step series logged yet")
        else:
            by = [hue] if hue else []
            agg = A.learning_curves(series, by=by, metric=metric, x=x, ci=ci)
            interval = agg.attrs["intervals"][metric]
            agg = agg.dropna(subset=[f"{metric}_mean"])
            groups = _hue_groups(agg, hue)
            for (key, part), color in zip(groups, _colors(groups, hue, agg)):
                part = part.sort_values(x)
                xs = part[x].to_numpy(float)
                mean, e = _bars(part, metric, err)
                lab = None if hue is None else f"{hue} = {_fmt(key)}"
                (ln,) = ax.plot(xs, mean, label=lab, color=color)
                if e is not None:
                    lo, hi = (mean - e, mean + e) if e.ndim == 1 else (mean - e[0], mean + e[1])
                    ax.fill_between(xs, lo, hi, color=ln.get_color(), alpha=0.2, lw=0)
            _legend(fig, ax, groups, hue, agg, units)
            params = series.attrs.get("params")
            if params is None:  # as A.learning_curves guesses them
                params = [c for c in series.columns if not N.reserved(c) and c != metric
                          and not A._looks_metric(series[c])]
            add_note(fig, _err_sentence(err, ci, interval, "Shaded bands"))
            pad = say_averaged(fig, ax, averaged_over(series, [x, hue], params))
        ax.set_xlabel(label(x, units))
        ax.set_ylabel(label(metric, units))
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.set_title(title or f"{label(metric)} during training "
                     f"({_err_label(err, ci, interval)})", pad=pad)
    return fig


def histogram(df: pd.DataFrame, column: str, hue: str | None = None, bins: Any = "auto",
              units: dict | None = None, title: str | None = None, logy: bool = False, ax=None,
              status: str | None = "done"):
    """Distribution of `column` over finished tasks (all rows when `column` is e.g. pb_duration_s
    and status=None), one outline per `hue` value on shared bins."""
    units = _units(df, units)
    fig, ax = new_figure() if ax is None else (ax.figure, ax)
    with _style():
        data = A._done(df, status)
        v_all = pd.to_numeric(data[column], errors="coerce").dropna() if len(data) else []
        if len(v_all) == 0:
            _empty(ax)
        else:
            edges = np.histogram_bin_edges(v_all.to_numpy(float), bins=bins)
            groups = _hue_groups(data, hue)
            for (key, part), color in zip(groups, _colors(groups, hue, data)):
                v = pd.to_numeric(part[column], errors="coerce").dropna().to_numpy(float)
                lab = None if hue is None else f"{hue} = {_fmt(key)}"
                ax.hist(v, bins=edges, histtype="step" if hue else "stepfilled", lw=1.8,
                        alpha=1.0 if hue else 0.8, label=lab, color=color)
            _legend(fig, ax, groups, hue, data, units)
        ax.set_xlabel(label(column, units))
        ax.set_ylabel("tasks")
        if logy:
            ax.set_yscale("log")
        ax.set_title(title or f"distribution of {label(column)}")
    return fig
