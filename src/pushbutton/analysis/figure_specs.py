"""The `[[figures]]` declarations of an experiment spec: checked against the results table (with
the valid choices in every error), named, and drawn with the plots of figures.py; and the
figures a report shows when a spec declares none.
"""
from __future__ import annotations

import difflib
import io
import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from pushbutton.analysis import stats as A
from pushbutton.analysis.figures import (ERRS, _empty, _numeric_col, _style, heatmap, histogram,
                                         learning_curves, line, new_figure, save)
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
        _check_keys(d, where, file, table)
        _check_columns(d, where, file, table, df, check_columns)
        _check_options(d, where, file)
        checked = dict(d)
        checked["name"] = _figure_name(i, d, where, file, names)
        names.add(checked["name"])
        out.append(checked)
    return out


def _check_keys(d: dict, where: str, file, table: list[str]) -> None:
    """A known kind, no unknown keys, every required key given (`table`: its columns)."""
    kind = d.get("kind")
    if kind not in KINDS:
        raise SpecError(f"unknown figure kind {kind!r}", file=file, key=f"{where}.kind",
                        fix=f"use one of: {', '.join(KINDS)}")
    required, optional = _KEYS[kind]
    allowed = required | optional | _COMMON
    for k in d:
        if k not in allowed:
            raise SpecError(f"unknown key {k!r} for a {kind} figure", file=file,
                            key=f"{where}.{k}", fix=_choices(k, sorted(allowed)))
    for k in sorted(required):
        if d.get(k) in (None, ""):
            raise SpecError(f"a {kind} figure needs {k!r}", file=file, key=f"{where}.{k}",
                            fix=f"add {k} = \"<column>\"; columns: {', '.join(map(str, table))}")


def _check_columns(d: dict, where: str, file, table: list[str], df, in_table: bool) -> None:
    """Column-valued keys are names; with `in_table`, of columns of `table` (or, for `value`,
    an expression over df's)."""
    for k in sorted(_COLUMN_KEYS & set(d)):
        v = d[k]
        if d["kind"] == "learning_curves" and k == "x" and v in ("step", "time", N.STEP, N.TIME):
            continue
        if not isinstance(v, str):
            raise SpecError(f"must be a column name, got {v!r}", file=file,
                            key=f"{where}.{k}", fix=_choices("", table))
        if in_table and table and v not in table and \
                not (k == "value" and _is_expression(v, df)):
            raise SpecError(f"no column {v!r}", file=file, key=f"{where}.{k}",
                            fix=_choices(v, table))


def _check_options(d: dict, where: str, file) -> None:
    """err, boundary, logx/logy and units have the types they need."""
    if "err" in d and d["err"] not in ERRS:
        raise SpecError(f"err = {d['err']!r} is not known", file=file, key=f"{where}.err",
                        fix=f"use one of: {', '.join(ERRS)}")
    if "boundary" in d:
        b = d["boundary"]
        if not (isinstance(b, bool) or (isinstance(b, (int, float)) and math.isfinite(b))):
            raise SpecError(f"boundary must be a level (a number such as 0.5) or true, "
                            f"got {b!r}", file=file, key=f"{where}.boundary")
    for k in ("logx", "logy"):
        if k in d and not isinstance(d[k], bool):
            raise SpecError(f"{k} must be true or false", file=file, key=f"{where}.{k}")
    if "units" in d and not isinstance(d["units"], dict):
        raise SpecError("units must be a table of column = unit", file=file,
                        key=f"{where}.units", fix='units = { delta = "n/N" }')


def _figure_name(i: int, d: dict, where: str, file, taken: set) -> str:
    """The figure's name (given, or made from its kind and column), unique among `taken`."""
    name = str(d.get("name") or _default_name(i, d))
    # a given name becomes a file name in the report folder: the path-name rule applies
    bad = pathnames.problem(name) if d.get("name") else None
    if bad or not all(c.isalnum() or c in "-_." for c in name) or name in taken:
        raise SpecError(f"figure name {name!r} must be unique and use letters, digits, - _ ."
                        + (f" ({bad})" if bad else ""), file=file, key=f"{where}.name")
    return name


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


def _is_rate(s: pd.Series) -> bool:
    v = A._to_float(s).dropna()
    return bool(len(v)) and bool(v.isin([0.0, 1.0]).all())
