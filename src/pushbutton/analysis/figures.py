"""Figures from the results table: line plots with error bars, phase diagrams, learning curves,
histograms; and the `[[figures]]` declarations of an experiment spec.

Figures are built with matplotlib's object API (`Figure`, never pyplot): no GUI backend is needed
or touched, nothing accumulates in pyplot's figure list, and Jupyter shows a returned figure once
(via `_repr_png_`). matplotlib is imported on first use so `import pushbutton` stays fast.
"""
from __future__ import annotations

import difflib
import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from pushbutton.analysis import stats as A
from pushbutton.core import names as N
from pushbutton.core import pathnames
from pushbutton.core.errors import SpecError

KINDS = ("line", "heatmap", "learning_curves", "histogram")
_COMMON = {"kind", "name", "title", "caption", "units"}
# kind -> (required keys, optional keys); column-valued keys are checked against the table.
_KEYS = {
    "line": ({"x", "y"}, {"hue", "err", "logx", "logy", "ci"}),
    "heatmap": ({"x", "y", "value"}, {"boundary", "cmap", "vmin", "vmax"}),
    "learning_curves": ({"metric"}, {"hue", "x", "err", "logx", "logy", "ci"}),
    "histogram": ({"column"}, {"hue", "bins", "logy"}),
}
_COLUMN_KEYS = {"x", "y", "value", "hue", "metric", "column"}
ERRS = ("sem", "ci", "std", "none")

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


# --------------------------------------------------------------------------- spec declarations
def _truthy_bool(v):
    return isinstance(v, bool)


def validate(decls: Sequence[dict], df: pd.DataFrame | None, series: pd.DataFrame | None = None,
             file: str | None = None, check_columns: bool = True) -> list[dict]:
    """Check `[[figures]]` declarations against the tables; returns normalised copies.
    Raises SpecError naming e.g. `figures[1].x` and listing the valid choices.
    check_columns=False: before any task has finished, metric columns do not exist yet."""
    if decls is None:
        return []
    if not isinstance(decls, (list, tuple)):
        raise SpecError("must be a list of tables ([[figures]] in TOML)", file=file,
                        key="figures", fix='write [[figures]] blocks, e.g. kind = "line"')
    cols = _listing(df)
    scols = _listing(series)
    out, names = [], set()
    for i, d in enumerate(decls):
        where = f"figures[{i}]"
        if not isinstance(d, dict):
            raise SpecError("each figure must be a table of keys", file=file, key=where)
        kind = d.get("kind")
        if kind not in KINDS:
            raise SpecError(f"unknown figure kind {kind!r}", file=file, key=f"{where}.kind",
                            fix=f"use one of: {', '.join(KINDS)}")
        req, opt = _KEYS[kind]
        for k in d:
            if k not in req | opt | _COMMON:
                raise SpecError(f"unknown key {k!r} for a {kind} figure", file=file,
                                key=f"{where}.{k}", fix=_choices(k, sorted(req | opt | _COMMON)))
        for k in sorted(req):
            if d.get(k) in (None, ""):
                raise SpecError(f"a {kind} figure needs {k!r}", file=file, key=f"{where}.{k}",
                                fix=f"add {k} = \"<column>\"; columns: "
                                    f"{', '.join(map(str, scols if kind == 'learning_curves' else cols))}")
        table = scols if kind == "learning_curves" else cols
        for k in sorted(_COLUMN_KEYS & set(d)):
            v = d[k]
            if kind == "learning_curves" and k == "x" and v in ("step", "time", N.STEP, N.TIME):
                continue
            if not isinstance(v, str):
                raise SpecError(f"must be a column name, got {v!r}", file=file,
                                key=f"{where}.{k}", fix=_choices("", table))
            if check_columns and table and v not in table and \
                    not (k == "value" and _is_expression(v, df)):
                raise SpecError(f"no column {v!r}", file=file, key=f"{where}.{k}",
                                fix=_choices(v, table))
        if "err" in d and d["err"] not in ERRS:
            raise SpecError(f"err = {d['err']!r} is not known", file=file, key=f"{where}.err",
                            fix=f"use one of: {', '.join(ERRS)}")
        if "boundary" in d:
            b = d["boundary"]
            if not (_truthy_bool(b) or (isinstance(b, (int, float)) and math.isfinite(b))):
                raise SpecError(f"boundary must be a level (a number such as 0.5) or true, "
                                f"got {b!r}", file=file, key=f"{where}.boundary")
        for k in ("logx", "logy"):
            if k in d and not isinstance(d[k], bool):
                raise SpecError(f"{k} must be true or false", file=file, key=f"{where}.{k}")
        if "units" in d and not isinstance(d["units"], dict):
            raise SpecError("units must be a table of column = unit", file=file,
                            key=f"{where}.units", fix='units = { delta = "n/N" }')
        nd = dict(d)
        name = str(nd.get("name") or _default_name(i, nd))
        # a given name becomes a file name in the report folder: the path-name rule applies
        bad = pathnames.problem(name) if nd.get("name") else None
        if bad or not all(c.isalnum() or c in "-_." for c in name) or name in names:
            raise SpecError(f"figure name {name!r} must be unique and use letters, digits, - _ ."
                            + (f" ({bad})" if bad else ""), file=file, key=f"{where}.name")
        names.add(name)
        nd["name"] = name
        out.append(nd)
    return out


def _listing(df) -> list[str]:
    # Columns a figure can use: parameters and metrics, then the useful bookkeeping ones.
    if df is None:
        return []
    useful = [c for c in df.columns if not N.reserved(c)]
    return useful + [c for c in (N.DURATION, N.ATTEMPTS, N.STEP, N.TIME) if c in df.columns]


def _is_expression(v: str, df) -> bool:
    """A `value` that is an expression over the columns in the safe language (exprs.py)."""
    if df is None or not any(op in v for op in "<>=!+-*/%&|~ "):
        return False
    from pushbutton.analysis.exprs import expression
    try:
        expression(v, df.columns, "value")
        return True
    except SpecError:
        return False


def _choices(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, [str(o) for o in options], n=1) if word else []
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}valid: {', '.join(map(str, options))}"


def _default_name(i: int, d: dict) -> str:
    what = d.get("value") or d.get("y") or d.get("metric") or d.get("column") or ""
    what = "".join(c if c.isalnum() else "_" for c in str(what)).strip("_")
    return f"{i + 1:02d}-{d['kind']}" + (f"-{what}" if what else "")


def render(decl: dict, df: pd.DataFrame, series: pd.DataFrame | None = None,
           units: dict | None = None):
    """One validated declaration -> Figure."""
    kind = decl["kind"]
    table = series if kind == "learning_curves" else df
    missing = [decl[k] for k in ("x", "y", "hue", "metric", "column") if k in decl
               and (table is None or decl[k] not in table.columns)
               and not (kind == "learning_curves" and k == "x")]
    if "value" in decl and (df is None or (decl["value"] not in df.columns
                                           and not _is_expression(decl["value"], df))):
        missing.append(decl["value"])
    if missing:  # declared for columns no finished task has produced yet
        fig, ax = new_figure()
        with _style():
            _empty(ax, f"no values of {', '.join(map(repr, missing))} yet")
            ax.set_title(decl.get("title") or decl["name"])
        return fig
    u = dict(units or {})
    u.update(decl.get("units") or {})
    kw = {k: v for k, v in decl.items() if k not in _COMMON}
    kw["units"] = u
    kw["title"] = decl.get("title")
    if kind == "line":
        return line(df, **kw)
    if kind == "heatmap":
        return heatmap(df, **kw)
    if kind == "learning_curves":
        return learning_curves(series if series is not None else pd.DataFrame(), **kw)
    return histogram(df, **kw)


def figures_from_spec(decls: Sequence[dict], df: pd.DataFrame, series: pd.DataFrame | None,
                      outdir: str | Path, formats: Sequence[str] = ("png", "svg", "pdf"),
                      units: dict | None = None, file: str | None = None,
                      keep: bool = False) -> list[dict]:
    """Validate and render every declaration into `outdir`. Returns one dict per figure:
    name, kind, title, caption, decl, paths (written files), png (bytes, for embedding),
    and fig when keep=True (figures are otherwise closed to free memory)."""
    outdir = Path(outdir)
    results = []
    for d in validate(decls, df, series, file=file):
        fig = render(d, df, series, units)
        paths = save(fig, outdir / d["name"], formats=formats)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
        title = d.get("title") or (fig.axes[0].get_title() if fig.axes else d["name"])
        results.append({"name": d["name"], "kind": d["kind"], "title": title,
                        "caption": d.get("caption", ""), "decl": d, "paths": paths,
                        "png": buf.getvalue(), **({"fig": fig} if keep else {})})
    return results


def auto_declarations(df: pd.DataFrame, series: pd.DataFrame | None = None,
                      max_figures: int = 6) -> list[dict]:
    """Sensible figures when a spec declares none: a phase diagram over the two widest
    parameters (else a line plot over the widest), learning curves, and the run-time histogram."""
    decls: list[dict] = []
    if df is None or df.empty:
        return decls
    params = [p for p in A.param_columns(df) if p not in A.REPLICATE]
    metrics = A.metric_columns(df)
    varied = [p for p in params if df[p].nunique() > 1 and _numeric_col(df[p])]
    others = [p for p in params if p not in varied[:1] and 1 < df[p].nunique() <= 8]
    for m in metrics[:3]:
        if len(varied) >= 2:
            decls.append({"kind": "heatmap", "x": varied[0], "y": varied[1], "value": m,
                          **({"boundary": 0.5} if _is_rate(df[m]) else {})})
        elif varied:
            decls.append({"kind": "line", "x": varied[0], "y": m,
                          **({"hue": others[0]} if others else {})})
    if series is not None and len(series):
        smet = [c for c in series.columns if not N.reserved(c) and c not in params
                and A._is_numeric(series[c])]
        for m in smet[:2]:
            decls.append({"kind": "learning_curves", "metric": m,
                          **({"hue": varied[0]} if varied and varied[0] in series.columns
                             and series[varied[0]].nunique() <= 8 else {})})
    if N.DURATION in df.columns and df[N.DURATION].notna().any():
        decls.append({"kind": "histogram", "column": N.DURATION,
                      "title": "task run time (finished tasks)"})
    return decls[:max_figures]


def _numeric_col(s):
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _is_rate(s: pd.Series) -> bool:
    v = A._to_float(s).dropna()
    return bool(len(v)) and bool(v.isin([0.0, 1.0]).all())
