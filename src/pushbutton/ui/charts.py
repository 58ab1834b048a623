"""The spec's figures as Plotly figure dicts (JSON) for the live page: the same figures the
static report draws, from the same aggregation (analysis/stats.py: Wilson intervals for 0/1
metrics, Student t otherwise; the phase boundary; what a figure averaged over), drawn
interactively in the browser.

Pure functions: a results table, its series and the `[[figures]]` declarations in, plain dicts
out. Each figure is `{"name", "kind", "title", "caption", "notes", "plotly": {"data",
"layout"}, "boundary"?}`. `title`, `caption` and `notes` are plain text (the page puts them in
with textContent); every user string inside `plotly` is HTML-escaped, because Plotly renders
trace names, axis titles, tick labels and hover text as a small HTML subset (it turns `&#60;`
back into `<` as text, so an escaped name reads as written and can inject nothing).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from pushbutton.analysis import figure_specs as FS
from pushbutton.analysis import stats as A
from pushbutton.analysis.figure_base import (_fmt, _numeric_col, _units, averaged_over,
                                             hue_scale, label)
from pushbutton.analysis.figures import (_bars, _continuous, _default_err, _err_label,
                                         _err_sentence, _hue_groups, _say_undrawn)
from pushbutton.analysis.phase import _Axis, _cell_counts, _marks_said
from pushbutton.core import names as N

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")  # matplotlib's default cycle, as the report's
FAILED_COLOR, NO_VALUE_COLOR = "#cccccc", "#efefef"


_ESCAPES = str.maketrans({"&": "&#38;", "<": "&#60;", ">": "&#62;", '"': "&#34;", "'": "&#39;"})


def esc(v) -> str:
    """A user string as Plotly text: shown as written, never markup. Numeric character
    references, because Plotly decodes those and only a few named ones (not &quot;)."""
    return str(v).translate(_ESCAPES)


class _Notes:
    """What the analysis layer's note helpers write into (a figure's pb_notes)."""

    def __init__(self):
        self.pb_notes: list[str] = []


def _averaged_note(notes: _Notes, over: list[tuple[str, int]]) -> str | None:
    """The sentence figure_base.say_averaged writes; returns the short form for the subtitle."""
    if not over:
        return None
    text = "averaged over " + ", ".join(f"{p} ({n} values)" for p, n in over)
    notes.pb_notes.append(text[0].upper() + text[1:] + ": name it as hue (or x, y) to tell "
                          "them apart.")
    return text


def _num(a) -> list:
    """Numbers as JSON: NaN and inf become null (a gap in the line)."""
    out = []
    for v in np.asarray(a, dtype=float).ravel().tolist():
        out.append(v if math.isfinite(v) else None)
    return out


def _axis_values(values, numeric: bool) -> list:
    return _num(values) if numeric else [esc(_fmt(v)) for v in values]


def _axis(title: str, numeric: bool, log: bool = False) -> dict:
    kind = "log" if log else ("linear" if numeric else "category")
    return {"title": {"text": esc(title)}, "type": kind, "automargin": True}


def _layout(title: str, xaxis: dict, yaxis: dict, subtitle: str | None = None, **more) -> dict:
    text = esc(title) + (f"<br><sub>{esc(subtitle)}</sub>" if subtitle else "")
    out = {"title": {"text": text, "font": {"size": 14}}, "xaxis": xaxis, "yaxis": yaxis,
           "hovermode": "closest", "margin": {"t": 70 if subtitle else 50, "r": 20},
           "legend": {"font": {"size": 10}}, "template": None}
    out.update(more)
    return out


def _group_colors(groups, hue, df) -> list:
    """One colour per hue group: the default cycle, or a viridis scale over many numbers."""
    if not _continuous(groups, hue, df):
        return [PALETTE[i % len(PALETTE)] for i in range(len(groups))]
    from matplotlib.colors import to_hex
    cmap, norm = hue_scale([float(k) for k, _ in groups])
    return [to_hex(cmap(norm(float(k)))) for k, _ in groups]


def _hue_name(hue, key) -> str | None:
    return None if hue is None else f"{hue} = {_fmt(key)}"


def _empty(title: str, msg: str = "no finished tasks yet") -> dict:
    return {"data": [], "layout": _layout(title, {"visible": False}, {"visible": False},
                                          annotations=[{"text": esc(msg), "showarrow": False,
                                                        "xref": "paper", "yref": "paper",
                                                        "x": 0.5, "y": 0.5}])}


# --------------------------------------------------------------------------- line plots
def line(df: pd.DataFrame, x: str, y: str, hue: str | None = None, err: str | None = None,
         ci: float = 0.95, units: dict | None = None, title: str | None = None,
         logx: bool = False, logy: bool = False, status: str | None = "done") -> dict:
    """analysis.figures.line as Plotly: means with error bars, one trace per hue value."""
    err = _default_err(df, y, err)
    units = _units(df, units)
    agg = A.aggregate(df, by=[x] + ([hue] if hue else []), metrics=[y], ci=ci, quantiles=(),
                      status=status)
    interval = agg.attrs["intervals"][y]
    agg = agg.dropna(subset=[f"{y}_mean"])
    return line_figure(agg, interval, x, y, hue, err, ci, units, title, logx, logy,
                       undrawn=lambda notes: _say_undrawn(notes, df, agg, x, hue),
                       over=averaged_over(A._done(df, status), [x, hue]))


def line_figure(agg: pd.DataFrame, interval: str, x: str, y: str, hue, err: str, ci: float,
                units: dict, title, logx: bool, logy: bool, undrawn, over) -> dict:
    """The line figure from its aggregate (`stats.aggregate`'s rows with a mean), what the
    caption says of undrawn points (`undrawn(notes)`) and what it averaged over."""
    notes = _Notes()
    numeric_x = len(agg) == 0 or _numeric_col(agg[x])
    groups = _hue_groups(agg, hue)
    data = []
    for (key, part), color in zip(groups, _group_colors(groups, hue, agg)):
        part = part.sort_values(x)
        mean, e = _bars(part, y, err)
        lo = hi = None
        error_y = {"visible": False}
        if e is not None:
            e = np.asarray(e, dtype=float)
            minus, plus = (e, e) if e.ndim == 1 else (e[0], e[1])
            lo, hi = mean - minus, mean + plus
            error_y = {"type": "data", "symmetric": False, "array": _num(plus),
                       "arrayminus": _num(minus), "thickness": 1.2, "width": 4}
        name = _hue_name(hue, key)
        custom = [[a, b, int(n)] for a, b, n in zip(
            _num(lo if lo is not None else mean), _num(hi if hi is not None else mean),
            part[f"{y}_count"].to_numpy())]
        data.append({
            "type": "scatter", "mode": "lines+markers", "x": _axis_values(part[x], numeric_x),
            "y": _num(mean), "error_y": error_y, "customdata": custom,
            "name": esc(name) if name else esc(y), "showlegend": hue is not None,
            "line": {"color": color}, "marker": {"color": color, "size": 7},
            "hovertemplate": (f"{esc(x)} = %{{x}}<br>{esc(y)}: mean %{{y:.4g}}"
                              + (f"<br>{esc(_err_label(err, ci, interval))}: "
                                 "%{customdata[0]:.4g} … %{customdata[1]:.4g}"
                                 if e is not None else "")
                              + "<br>n = %{customdata[2]}"),
        })
    notes.pb_notes.append(_err_sentence(err, ci, interval))
    undrawn(notes)
    sub = _averaged_note(notes, over)
    title = title or f"{label(y)} vs {label(x)} ({_err_label(err, ci, interval)})"
    if agg.empty:
        fig = _empty(title)
    else:
        fig = {"data": data, "layout": _layout(title, _axis(label(x, units), numeric_x, logx),
                                               _axis(label(y, units), True, logy), sub,
                                               showlegend=hue is not None)}
    return {"title": title, "notes": notes.pb_notes, "plotly": fig}


# --------------------------------------------------------------------------- learning curves
def learning_curves(series: pd.DataFrame, metric: str, hue: str | None = None, x: str = N.STEP,
                    err: str | None = None, ci: float = 0.95, units: dict | None = None,
                    title: str | None = None, logx: bool = False, logy: bool = False) -> dict:
    """analysis.figures.learning_curves as Plotly: per-step means with a shaded band."""
    err = _default_err(series, metric, err)
    units = _units(series, units)
    x = A.step_column(series, x)
    notes = _Notes()
    interval, sub, data = "t", None, []
    empty = series is None or len(series) == 0 or metric not in series.columns
    if not empty:
        agg = A.learning_curves(series, by=[hue] if hue else [], metric=metric, x=x, ci=ci)
        interval = agg.attrs["intervals"][metric]
        agg = agg.dropna(subset=[f"{metric}_mean"])
        groups = _hue_groups(agg, hue)
        for (key, part), color in zip(groups, _group_colors(groups, hue, agg)):
            part = part.sort_values(x)
            xs = part[x].to_numpy(float)
            mean, e = _bars(part, metric, err)
            name = esc(_hue_name(hue, key) or metric)
            group = f"g{len(data)}"
            if e is not None:
                e = np.asarray(e, dtype=float)
                lo, hi = (mean - e, mean + e) if e.ndim == 1 else (mean - e[0], mean + e[1])
                data.append({"type": "scatter", "mode": "lines", "x": _num(xs), "y": _num(lo),
                             "line": {"width": 0, "color": color}, "hoverinfo": "skip",
                             "showlegend": False, "legendgroup": group, "name": name})
                data.append({"type": "scatter", "mode": "lines", "x": _num(xs), "y": _num(hi),
                             "fill": "tonexty", "fillcolor": _alpha(color, 0.2),
                             "line": {"width": 0, "color": color}, "hoverinfo": "skip",
                             "showlegend": False, "legendgroup": group, "name": name})
            custom = [[a, b] for a, b in zip(_num(lo if e is not None else mean),
                                             _num(hi if e is not None else mean))]
            data.append({"type": "scatter", "mode": "lines", "x": _num(xs), "y": _num(mean),
                         "name": name, "legendgroup": group, "showlegend": hue is not None,
                         "line": {"color": color}, "customdata": custom,
                         "hovertemplate": f"{esc(x)} = %{{x}}<br>{esc(metric)}: mean "
                                          "%{y:.4g}" + ("<br>band %{customdata[0]:.4g} … "
                                                        "%{customdata[1]:.4g}"
                                                        if e is not None else "")})
        params = series.attrs.get("params")
        if params is None:
            params = [c for c in series.columns if not N.reserved(c) and c != metric
                      and not A._looks_metric(series[c])]
        notes.pb_notes.append(_err_sentence(err, ci, interval, "Shaded bands"))
        sub = _averaged_note(notes, averaged_over(series, [x, hue], params))
    title = title or f"{label(metric)} during training ({_err_label(err, ci, interval)})"
    if empty:
        fig = _empty(title, "no per-step series logged yet")
    else:
        fig = {"data": data, "layout": _layout(title, _axis(label(x, units), True, logx),
                                               _axis(label(metric, units), True, logy), sub,
                                               showlegend=hue is not None)}
    return {"title": title, "notes": notes.pb_notes, "plotly": fig}


def _alpha(color: str, a: float) -> str:
    c = color.lstrip("#")
    r, g, b = (int(c[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{a})"


# --------------------------------------------------------------------------- histograms
def histogram(df: pd.DataFrame, column: str, hue: str | None = None, bins="auto",
              units: dict | None = None, title: str | None = None, logy: bool = False,
              status: str | None = "done") -> dict:
    """analysis.figures.histogram as Plotly: counts on the same shared bins."""
    units = _units(df, units)
    data_rows = A._done(df, status)
    v_all = pd.to_numeric(data_rows[column], errors="coerce").dropna() if len(data_rows) \
        else pd.Series(dtype=float)
    title = title or f"distribution of {label(column)}"
    if len(v_all) == 0:
        return {"title": title, "notes": [], "plotly": _empty(title)}
    edges = np.histogram_bin_edges(v_all.to_numpy(float), bins=bins)
    groups = _hue_groups(data_rows, hue)
    counts = [np.histogram(pd.to_numeric(part[column], errors="coerce").dropna()
                           .to_numpy(float), bins=edges)[0] for _, part in groups]
    return histogram_figure(edges, groups, counts, data_rows, column, hue, units, title, logy)


def histogram_figure(edges, groups: list, counts: list, hue_frame: pd.DataFrame, column: str,
                     hue, units: dict, title: str, logy: bool) -> dict:
    """The histogram from its bin edges and each hue group's counts (groups: (key, part) as
    `_hue_groups` gives them; hue_frame: a frame with the hue column, for its colours)."""
    data = []
    for (key, _), color, counts in zip(groups, _group_colors(groups, hue, hue_frame), counts):
        data.append({"type": "bar", "x": _num((edges[:-1] + edges[1:]) / 2),
                     "width": _num(np.diff(edges)), "y": [int(c) for c in counts],
                     "customdata": [[a, b] for a, b in zip(_num(edges[:-1]), _num(edges[1:]))],
                     "name": esc(_hue_name(hue, key) or column), "showlegend": hue is not None,
                     "marker": {"color": color, "line": {"width": 0}},
                     "opacity": 0.6 if hue else 0.85,
                     "hovertemplate": f"{esc(column)} %{{customdata[0]:.4g}} … "
                                      "%{customdata[1]:.4g}<br>%{y} tasks"})
    fig = {"data": data, "layout": _layout(title, _axis(label(column, units), True),
                                           _axis("tasks", True, logy), barmode="overlay",
                                           bargap=0, showlegend=hue is not None)}
    return {"title": title, "notes": [], "plotly": fig}


# --------------------------------------------------------------------------- heatmaps
def heatmap(df: pd.DataFrame, x: str, y: str, value: str, boundary=None,
            units: dict | None = None, title: str | None = None, cmap: str = "viridis",
            vmin: float | None = None, vmax: float | None = None, status: str | None = "done",
            logx: bool | None = None, logy: bool | None = None) -> dict:
    """analysis.phase.heatmap as Plotly: cell means (numeric axes to scale, categories evenly),
    marked cells where every task failed or no value is there yet, and the boundary line."""
    units = _units(df, units)
    title = title or f"{label(value)} over {label(x)} × {label(y)}"
    data_rows = A._done(df, status)
    vals = data_rows[[x, y]].copy()
    vals["_v"] = A._success_values(data_rows, value, "value")
    xa, ya = _Axis(df[x], logx), _Axis(df[y], logy)
    surf = vals.groupby([y, x], sort=False, dropna=False)["_v"].agg(["mean", "count"]) \
        if len(vals) else pd.DataFrame(columns=["mean", "count"])
    z = surf["mean"].unstack(x).reindex(index=ya.levels, columns=xa.levels).to_numpy(float) \
        if len(surf) else np.full((len(ya.levels), len(xa.levels)), np.nan)
    nval = surf["count"].unstack(x).reindex(index=ya.levels, columns=xa.levels) \
        .fillna(0).to_numpy(float) if len(surf) else np.zeros_like(z)
    counts = _cell_counts(df, x, y, ya.levels, xa.levels)
    return heatmap_figure(xa, ya, z, nval, counts, A.is_binary(vals["_v"]), x, y, value,
                          boundary, units, title, cmap, vmin, vmax,
                          bound=lambda level: A.boundary(df, x, y, rate=value, level=level,
                                                         status=status),
                          over=averaged_over(data_rows, [x, y]))


def heatmap_figure(xa: _Axis, ya: _Axis, z, nval, counts: dict, binary: bool, x: str, y: str,
                   value: str, boundary, units: dict, title: str, cmap: str, vmin, vmax,
                   bound, over) -> dict:
    """The heatmap from its axes, cell means `z` and value counts `nval` (y rows, x columns),
    the cells' task and failure counts, whether the value is 0/1, `bound(level)` (the
    boundary's table) and what it averaged over."""
    notes = _Notes()
    empty = np.isnan(z) & (counts["total"] > 0)
    all_failed = empty & (counts["failed"] == counts["total"])
    no_value = empty & ~all_failed
    if z.size == 0 or (np.isnan(z).all() and not all_failed.any()):
        return {"title": title, "notes": [], "plotly": _empty(title)}
    if binary and vmin is None and vmax is None:
        vmin, vmax = 0.0, 1.0  # a rate: the same colours mean the same in every figure
    xs = _num(xa.edges) if xa.numeric else [esc(_fmt(v)) for v in xa.levels]
    ys = _num(ya.edges) if ya.numeric else [esc(_fmt(v)) for v in ya.levels]
    # (each axis value's line made once: a 100 x 100 grid has 10^4 cells)
    xl = [f"{esc(x)} = {esc(_fmt(v))}" for v in xa.levels]
    yl = [f"{esc(y)} = {esc(_fmt(v))}" for v in ya.levels]
    mean_of = f"mean {esc(value)}: "
    total, failed = counts["total"].tolist(), counts["failed"].tolist()
    zl, nl = z.tolist(), nval.tolist()
    text = [[_cell_lines(xl[j], yl[i], mean_of, zl[i][j], nl[i][j], total[i][j], failed[i][j])
             for j in range(len(xl))] for i in range(len(yl))]
    data = [{"type": "heatmap", "x": xs, "y": ys, "z": [_num(r) for r in z], "text": text,
             "hovertemplate": "%{text}<extra></extra>", "colorscale": colorscale(cmap),
             "zmin": vmin, "zmax": vmax, "name": esc(value),
             "colorbar": {"title": {"text": esc(label(value, units)), "side": "right"}}}]
    for cells, color, what in ((all_failed, FAILED_COLOR, "every task failed"),
                               (no_value, NO_VALUE_COLOR, "no value yet")):
        if cells.any():
            data.append({"type": "heatmap", "x": xs, "y": ys, "showscale": False,
                         "z": [[1.0 if c else None for c in r] for r in cells], "text": text,
                         "hovertemplate": "%{text}<extra></extra>", "name": what,
                         "colorscale": [[0, color], [1, color]], "zmin": 0, "zmax": 1})
    _marks_said(notes, all_failed, no_value, counts["total"])
    table = None
    if boundary is not None and boundary is not False:
        level = 0.5 if boundary is True else float(boundary)
        if not ya.numeric:
            notes.pb_notes.append(f"No boundary drawn: it is interpolated along y, and {y!r} "
                                  "is not numeric.")
        else:
            b = bound(level)
            notes.pb_notes.append(f"Line: where the mean of {value} crosses {level:g}, "
                                  f"interpolated linearly in {y} between grid points (the "
                                  f"table lists it per {x}).")
            table = {"x": x, "y": y, "value": value, "level": level,
                     "rows": [{"x": _json_value(r[x]), "y": _num([r[y]])[0],
                               # None where the mean never crosses (pandas may hold NaN)
                               "direction": r["pb_direction"]
                               if isinstance(r["pb_direction"], str) else None,
                               "crossings": int(r["pb_n_crossings"])}
                              for r in b.to_dict("records")]}
            found = b.dropna(subset=[y])
            if len(found):
                bx = _num(xa.where(found[x].tolist())) if xa.numeric \
                    else [esc(_fmt(v)) for v in found[x]]
                data.append({"type": "scatter", "mode": "lines+markers", "x": bx,
                             "y": _num(found[y]), "name": esc(f"{label(value)} = {level:g}"),
                             "line": {"color": "black", "width": 2}, "marker": {"size": 5},
                             "hovertemplate": f"boundary: {esc(y)} = %{{y:.4g}} at "
                                              f"{esc(x)} = %{{x}}<extra></extra>"})
    sub = _averaged_note(notes, over)
    xaxis = _axis(label(x, units), xa.numeric, xa.log)
    yaxis = _axis(label(y, units), ya.numeric, ya.log)
    for ax, a in ((xaxis, xa), (yaxis, ya)):
        if a.numeric:  # the cells' extent, as the report's figure
            lo, hi = float(a.edges[0]), float(a.edges[-1])
            ax["range"] = [math.log10(lo), math.log10(hi)] if a.log else [lo, hi]
        else:
            ax["categoryorder"] = "array"
            ax["categoryarray"] = [esc(_fmt(v)) for v in a.levels]
    fig = {"data": data, "layout": _layout(title, xaxis, yaxis, sub,
                                           legend={"orientation": "h", "y": -0.2})}
    out = {"title": title, "notes": notes.pb_notes, "plotly": fig}
    if table is not None:
        out["boundary"] = table
    return out


def _cell_text(x, y, value, xv, yv, mean, n, total, failed) -> str:
    return _cell_lines(f"{esc(x)} = {esc(_fmt(xv))}", f"{esc(y)} = {esc(_fmt(yv))}",
                       f"mean {esc(value)}: ", mean, n, total, failed)


def _cell_lines(xline: str, yline: str, mean_of: str, mean, n, total, failed) -> str:
    return "<br>".join((xline, yline, mean_of + ("–" if math.isnan(mean) else f"{mean:.4g}")
                        + f" (n = {int(n)})", f"{int(total)} tasks, {int(failed)} failed"
                        if total else "no task here (outside the space)"))


def _json_value(v):
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v if isinstance(v, (int, float, bool, str)) or v is None else str(v)


def colorscale(name: str) -> list:
    """A matplotlib colour map as a Plotly colour scale (the report's colours)."""
    import matplotlib
    from matplotlib.colors import to_hex
    try:
        cm = matplotlib.colormaps[name]
    except KeyError:
        cm = matplotlib.colormaps["viridis"]
    return [[i / 10, to_hex(cm(i / 10))] for i in range(11)]


# --------------------------------------------------------------------------- the spec's figures
_KINDS = {"line": line, "heatmap": heatmap, "learning_curves": learning_curves,
          "histogram": histogram}


def render(decl: dict, df: pd.DataFrame, series: pd.DataFrame | None = None,
           units: dict | None = None) -> dict:
    """One validated declaration -> figure dict (as figure_specs.render does for the report)."""
    kind = decl["kind"]
    table = series if kind == "learning_curves" else df
    missing = [decl[k] for k in ("x", "y", "hue", "metric", "column") if k in decl
               and (table is None or decl[k] not in table.columns)
               and not (kind == "learning_curves" and k == "x")]
    if "value" in decl and (df is None or (decl["value"] not in df.columns
                                           and not FS._is_expression(decl["value"], df))):
        missing.append(decl["value"])
    base = {"name": decl["name"], "kind": kind, "caption": decl.get("caption", "")}
    if missing:
        title = decl.get("title") or decl["name"]
        return {**base, "title": title, "notes": [],
                "plotly": _empty(title, f"no values of {', '.join(map(repr, missing))} yet")}
    u = dict(units or {})
    u.update(decl.get("units") or {})
    kw = {k: v for k, v in decl.items() if k not in FS._COMMON}
    kw["units"] = u
    kw["title"] = decl.get("title")
    data = series if kind == "learning_curves" else df
    if kind == "learning_curves" and data is None:
        data = pd.DataFrame()
    return {**base, **_KINDS[kind](data, **kw)}


def figures(df: pd.DataFrame | None, series: pd.DataFrame | None, decls: Sequence[dict] | None,
            units: dict | None = None, file: str | None = None) -> dict:
    """Every figure the report of this table would draw: `{"figures": [...], "problems":
    [...]}`. decls None: the report's automatic figures. A bad declaration is a SpecError, as
    in the report; a figure that cannot be drawn is a problem, not a failure of the others."""
    declared = decls is not None
    if decls is None:
        decls = FS.auto_declarations(df, series) if df is not None else []
    finished = df is not None and N.STATUS in df.columns and (df[N.STATUS] == "done").any()
    valid = FS.validate(decls, df, series, file=file,
                        check_columns=bool(finished) or (df is not None and N.STATUS not in df))
    return render_all(valid, lambda d: render(d, df, series, units), declared)


def render_all(valid, draw, declared: bool) -> dict:
    """Each validated figure drawn by `draw`; one that fails is named, not fatal to the page."""
    out, problems = [], []
    for i, d in enumerate(valid):
        try:
            out.append(draw(d))
        except Exception as e:  # noqa: BLE001 - one figure must not sink the page
            where = f"figures[{i}]" if declared else "automatic"
            problems.append(f"figure {d['name']!r} ({d['kind']}, {where}) could not be drawn: "
                            f"{type(e).__name__}: {e}")
    return {"figures": out, "problems": problems}


__all__ = ["figures", "render", "line", "heatmap", "learning_curves", "histogram", "esc",
           "colorscale"]
