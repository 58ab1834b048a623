"""The `[[figures]]` declarations of an experiment spec: checked against the results table (with
the valid choices in every error), named, and drawn with the plots of figures.py; and the
figures a report shows when a spec declares none.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import pandas as pd

from pushbutton.analysis import stats as A
from pushbutton.analysis.figures import (_empty, _numeric_col, _style, heatmap, histogram,
                                         learning_curves, line, new_figure, notes, save)
from pushbutton.core import names as N
from pushbutton.core.errors import SpecError
from pushbutton.spec.figure_keys import (COLUMN_KEYS as _COLUMN_KEYS, COMMON as _COMMON,
                                             KINDS, STEP_NAMES, check_keys, check_options,
                                             choices as _choices, figure_name)

__all__ = ["KINDS", "validate", "render", "figures_from_spec", "auto_declarations"]


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
    cols, scols = _listing(df), _listing(series)
    out, names = [], set()
    for i, d in enumerate(decls):
        where = f"figures[{i}]"
        if not isinstance(d, dict):
            raise SpecError("each figure must be a table of keys", file=file, key=where)
        table = scols if d.get("kind") == "learning_curves" else cols
        check_keys(d, where, file, table)
        _check_columns(d, where, file, table, df, check_columns)
        check_options(d, where, file)
        checked = dict(d)
        checked["name"] = figure_name(i, d, where, file, names)
        names.add(checked["name"])
        out.append(checked)
    return out


def _check_columns(d: dict, where: str, file, table: list[str], df, in_table: bool) -> None:
    """Column-valued keys name columns of `table` (or, for `value`, an expression over df's)."""
    for k in sorted(_COLUMN_KEYS & set(d)):
        v = d[k]
        if d["kind"] == "learning_curves" and k == "x" and v in STEP_NAMES:
            continue
        if in_table and table and v not in table and \
                not (k == "value" and _is_expression(v, df)):
            raise SpecError(f"no column {v!r}", file=file, key=f"{where}.{k}",
                            fix=_choices(v, table))


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
    name, kind, title, caption, notes (what the error bars are, what was averaged over, ...),
    decl, paths (written files), png (bytes, for embedding), and fig when keep=True (figures
    are otherwise closed to free memory)."""
    outdir = Path(outdir)
    results = []
    for d in validate(decls, df, series, file=file):
        fig = render(d, df, series, units)
        paths = save(fig, outdir / d["name"], formats=formats)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
        title = d.get("title") or (fig.axes[0].get_title() if fig.axes else d["name"])
        results.append({"name": d["name"], "kind": d["kind"], "title": title,
                        "caption": d.get("caption", ""), "notes": notes(fig), "decl": d,
                        "paths": paths,
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
                          **({"boundary": 0.5} if A.is_binary(df[m]) else {})})
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
