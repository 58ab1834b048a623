"""Figures from the results table: line plots with error bars, phase diagrams, learning curves,
histograms. The `[[figures]]` declarations of a spec are read in figure_specs.py.

Figures are built with matplotlib's object API (`Figure`, never pyplot): no GUI backend is needed
or touched, nothing accumulates in pyplot's figure list, and Jupyter shows a returned figure once
(via `_repr_png_`). matplotlib is imported on first use so `import pushbutton` stays fast.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from pushbutton.analysis import stats as A
from pushbutton.core import names as N

ERRS = ("sem", "ci", "std", "none")  # the error bars line plots and learning curves draw

# Sizes for print: a 6.4 in wide figure scaled to one column stays legible at these sizes.
_STYLE = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 12, "xtick.labelsize": 10,
          "ytick.labelsize": 10, "legend.fontsize": 9, "legend.title_fontsize": 10,
          "lines.linewidth": 1.8, "lines.markersize": 5, "axes.grid": True, "grid.alpha": 0.3,
          "svg.fonttype": "path", "pdf.fonttype": 42,
          "svg.hashsalt": "pushbutton"}  # fixed ids: the same figure gives the same SVG

_FigureClass = None


def _figure_class():
    """A Figure subclass that draws itself in notebooks; created lazily with matplotlib."""
    global _FigureClass
    if _FigureClass is None:
        from matplotlib.figure import Figure

        class PBFigure(Figure):
            def _repr_png_(self):
                buf = io.BytesIO()
                self.savefig(buf, format="png", dpi=100)
                return buf.getvalue()

        _FigureClass = PBFigure
    return _FigureClass


def new_figure(figsize=(6.4, 4.4)):
    """A figure with one axes, constrained layout (room for labels and colorbars)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    with matplotlib.rc_context(_STYLE):
        fig = _figure_class()(figsize=figsize, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
    return fig, ax


def _style():
    import matplotlib
    return matplotlib.rc_context(_STYLE)


def label(name: str, units: dict | None = None) -> str:
    """Axis label for a parameter/metric: "delta [n/N]" where units are declared."""
    text = str(name).replace("_", " ")
    u = (units or {}).get(name)
    return f"{text} [{u}]" if u else text


def _units(df, units):
    merged = dict(getattr(df, "attrs", {}).get("units", {}) or {})
    merged.update(units or {})
    return merged


def _empty(ax, msg="no finished tasks yet"):
    ax.text(0.5, 0.5, msg, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _bars(agg, m, err):
    mean = agg[f"{m}_mean"].to_numpy(float)
    if err == "sem":
        return mean, agg[f"{m}_sem"].to_numpy(float)
    if err == "std":
        return mean, agg[f"{m}_std"].to_numpy(float)
    if err == "ci":
        return mean, np.vstack([mean - agg[f"{m}_ci_low"], agg[f"{m}_ci_high"] - mean])
    return mean, None


def _err_label(err, ci):
    return {"sem": "mean ± s.e.m.", "std": "mean ± s.d.", "ci": f"mean, {ci:.0%} CI",
            "none": "mean"}[err]


def _hue_groups(df, hue):
    if hue is None:
        return [(None, df)]
    return list(df.groupby(hue, sort=True, dropna=False))


def _colors(groups, hue, df):
    """Colour per group: the default cycle for few/categorical values, viridis for many numbers."""
    if hue is None or len(groups) <= 6 or not _numeric_col(df[hue]):
        return [None] * len(groups)
    import matplotlib
    cmap = matplotlib.colormaps["viridis"]
    keys = [float(k) for k, _ in groups]
    lo, span = min(keys), (max(keys) - min(keys)) or 1.0
    return [cmap(0.9 * (k - lo) / span) for k in keys]  # by value: the colorbar can be read


def _legend(fig, ax, groups, hue, df, units):
    """Legend for few hue values; a colorbar for many numeric ones (a 50-entry legend would
    crush the axes); the first 12 entries for many categories."""
    if hue is None or not groups:
        return
    if len(groups) > 6 and _numeric_col(df[hue]):
        import matplotlib
        from matplotlib.cm import ScalarMappable
        keys = [float(k) for k, _ in groups]
        lo, span = min(keys), (max(keys) - min(keys)) or 1.0
        sm = ScalarMappable(norm=matplotlib.colors.Normalize(lo, lo + span / 0.9), cmap="viridis")
        cb = fig.colorbar(sm, ax=ax)
        cb.set_label(label(hue, units))
        return
    handles, labels = ax.get_legend_handles_labels()
    more = len(handles) > 12
    ax.legend(handles[:12], labels[:12], frameon=False, fontsize=9 if not more else 8,
              title=f"first 12 of {len(handles)}" if more else None)


def line(df: pd.DataFrame, x: str, y: str, hue: str | None = None, err: str = "sem",
         ci: float = 0.95, units: dict | None = None, title: str | None = None,
         logx: bool = False, logy: bool = False, ax=None, status: str | None = "done"):
    """Mean of metric `y` against parameter `x` (one line per `hue` value), averaged over
    replicates and any other parameters, with error bars (err: sem | ci | std | none)."""
    if err not in ERRS:
        raise ValueError(f"err must be one of {ERRS}, got {err!r}")
    units = _units(df, units)
    fig, ax = new_figure() if ax is None else (ax.figure, ax)
    with _style():
        by = [x] + ([hue] if hue else [])
        agg = A.aggregate(df, by=by, metrics=[y], ci=ci, quantiles=(), status=status)
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
        ax.set_title(title or f"{label(y)} vs {label(x)} ({_err_label(err, ci)})")
    return fig


def _edges(v: np.ndarray, log: bool = False) -> np.ndarray:
    """Cell edges around sorted centres (midpoints; uneven grids are drawn to scale)."""
    if len(v) == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = (v[:-1] + v[1:]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def heatmap(df: pd.DataFrame, x: str, y: str, value: str, boundary: float | bool | None = None,
            units: dict | None = None, title: str | None = None, cmap: str = "viridis",
            vmin: float | None = None, vmax: float | None = None, ax=None,
            status: str | None = "done"):
    """Phase diagram: the mean of `value` (a metric, a boolean, or an expression such as
    "err < 1e-3") over an x-y grid, optionally with the `boundary` level curve (True = 0.5)."""
    units = _units(df, units)
    fig, ax = new_figure(figsize=(6.4, 4.8)) if ax is None else (ax.figure, ax)
    with _style():
        data = A._done(df, status)
        vals = data[[x, y]].copy()
        vals["_v"] = A._success_values(data, value, "value")
        surf = vals.groupby([y, x], sort=True)["_v"].mean().unstack(x)
        if surf.size == 0 or surf.isna().all().all():
            _empty(ax)
        else:
            xs = np.asarray(surf.columns, dtype=float)
            ys = np.asarray(surf.index, dtype=float)
            mesh = ax.pcolormesh(_edges(xs), _edges(ys), surf.to_numpy(float), cmap=cmap,
                                 vmin=vmin, vmax=vmax, shading="flat")
            cb = fig.colorbar(mesh, ax=ax)
            cb.set_label(label(value, units))
            if boundary is not None and boundary is not False:
                level = 0.5 if boundary is True else float(boundary)
                b = A.boundary(df, x, y, rate=value, level=level, status=status).dropna(subset=[y])
                if len(b):
                    ax.plot(b[x], b[y], color="white", lw=3.2, zorder=3)
                    ax.plot(b[x], b[y], color="black", lw=1.6, zorder=4, marker=".",
                            label=f"{label(value)} = {level:g}")
                    ax.legend(frameon=True, loc="best")
            ax.set_xlim(_edges(xs)[0], _edges(xs)[-1])
            ax.set_ylim(_edges(ys)[0], _edges(ys)[-1])
            ax.grid(False)
        ax.set_xlabel(label(x, units))
        ax.set_ylabel(label(y, units))
        ax.set_title(title or f"{label(value)} over {label(x)} × {label(y)}")
    return fig


def learning_curves(series: pd.DataFrame, metric: str, hue: str | None = None, x: str = N.STEP,
                    err: str = "sem", ci: float = 0.95, units: dict | None = None,
                    title: str | None = None, logx: bool = False, logy: bool = False, ax=None):
    """Per-step mean of `metric` over replicates (one curve per `hue` value), shaded error band."""
    if err not in ERRS:
        raise ValueError(f"err must be one of {ERRS}, got {err!r}")
    units = _units(series, units)
    x = A.step_column(series, x)
    fig, ax = new_figure() if ax is None else (ax.figure, ax)
    with _style():
        if series is None or len(series) == 0 or metric not in series.columns:
            _empty(ax, "no per-step series logged yet")
        else:
            by = [hue] if hue else []
            agg = A.learning_curves(series, by=by, metric=metric, x=x, ci=ci)
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
        ax.set_xlabel(label(x, units))
        ax.set_ylabel(label(metric, units))
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.set_title(title or f"{label(metric)} during training ({_err_label(err, ci)})")
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


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def save(fig, stem: str | Path, formats: Sequence[str] = ("png", "svg", "pdf"),
         dpi: int = 150) -> list[Path]:
    """Write `stem.png`, `stem.svg`, ... (folders created); returns the paths.
    Metadata dates are left out so re-rendering the same data gives the same files."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        p = stem.with_name(f"{stem.name}.{fmt}")
        meta = {"svg": {"Date": None}, "pdf": {"CreationDate": None, "ModDate": None},
                "png": {"Software": None}}.get(fmt)
        with _style():
            fig.savefig(p, format=fmt, dpi=dpi, metadata=meta)
        out.append(p)
    return out


def _numeric_col(s):
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
