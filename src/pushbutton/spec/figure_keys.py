"""The keys of a `[[figures]]` declaration, checked without any table (plain Python, no pandas):
kind, known keys, required keys, option types and names. This is what `pb run`, `--dry-run`
and `pushbutton.load` check with the rest of the spec; figure_specs.py checks the column names
against the results table when a report is built. docs/REPORTS.md documents every key here
(a test keeps the two in step).
"""
from __future__ import annotations

import difflib
import math
from typing import Iterable, Sequence

from pushbutton.core import names as N
from pushbutton.core import pathnames
from pushbutton.core.errors import SpecError

KINDS = ("line", "heatmap", "learning_curves", "histogram")
COMMON = {"kind", "name", "title", "caption", "units"}
# kind -> (required keys, optional keys); column-valued keys are checked against the table.
KEYS = {
    "line": ({"x", "y"}, {"hue", "err", "logx", "logy", "ci"}),
    "heatmap": ({"x", "y", "value"}, {"boundary", "cmap", "vmin", "vmax", "logx", "logy"}),
    "learning_curves": ({"metric"}, {"hue", "x", "err", "logx", "logy", "ci"}),
    "histogram": ({"column"}, {"hue", "bins", "logy"}),
}
COLUMN_KEYS = {"x", "y", "value", "hue", "metric", "column"}
ERRS = ("sem", "ci", "std", "none")  # the error bars line plots and learning curves draw
STEP_NAMES = ("step", "time", N.STEP, N.TIME)  # the x of learning curves besides columns


def check(decls, file: str | None = None) -> list[dict]:
    """Kind, keys and options of every declaration (SpecError naming e.g. `figures[1].kind`);
    returns copies with a unique `name` each."""
    if decls is None:
        return []
    if not isinstance(decls, (list, tuple)):
        raise SpecError("must be a list of tables ([[figures]] in TOML)", file=file,
                        key="figures", fix='write [[figures]] blocks, e.g. kind = "line"')
    out, names = [], set()
    for i, d in enumerate(decls):
        where = f"figures[{i}]"
        if not isinstance(d, dict):
            raise SpecError("each figure must be a table of keys", file=file, key=where)
        check_keys(d, where, file, table=())
        check_options(d, where, file)
        checked = dict(d)
        checked["name"] = figure_name(i, d, where, file, names)
        names.add(checked["name"])
        out.append(checked)
    return out


def check_keys(d: dict, where: str, file, table: Sequence[str]) -> None:
    """A known kind, no unknown keys, every required key given (`table`: its columns, for the
    fix)."""
    kind = d.get("kind")
    if kind not in KINDS:
        raise SpecError(f"unknown figure kind {kind!r}", file=file, key=f"{where}.kind",
                        fix=f"use one of: {', '.join(KINDS)} (docs/REPORTS.md lists their keys)")
    required, optional = KEYS[kind]
    allowed = required | optional | COMMON
    for k in d:
        if k not in allowed:
            raise SpecError(f"unknown key {k!r} for a {kind} figure", file=file,
                            key=f"{where}.{k}", fix=choices(k, sorted(allowed)))
    for k in sorted(required):
        if d.get(k) in (None, ""):
            cols = f"; columns: {', '.join(map(str, table))}" if table else ""
            raise SpecError(f"a {kind} figure needs {k!r}", file=file, key=f"{where}.{k}",
                            fix=f"add {k} = \"<column>\"{cols}")
    for k in sorted(COLUMN_KEYS & set(d)):
        if not isinstance(d[k], str) or not d[k]:
            raise SpecError(f"must be a column name, got {d[k]!r}", file=file,
                            key=f"{where}.{k}", fix=choices("", table) if table
                            else f'write {k} = "<column>"')


def check_options(d: dict, where: str, file) -> None:
    """err, ci, boundary, logx/logy, vmin/vmax, bins, cmap and units have the types they need."""
    if "err" in d and d["err"] not in ERRS:
        raise SpecError(f"err = {d['err']!r} is not known", file=file, key=f"{where}.err",
                        fix=f"use one of: {', '.join(ERRS)}")
    if "ci" in d and not (_number(d["ci"]) and 0 < d["ci"] < 1):
        raise SpecError(f"ci must be a confidence level between 0 and 1, got {d['ci']!r}",
                        file=file, key=f"{where}.ci", fix="e.g. ci = 0.95")
    if "boundary" in d:
        b = d["boundary"]
        if not (isinstance(b, bool) or _number(b)):
            raise SpecError(f"boundary must be a level (a number such as 0.5) or true, "
                            f"got {b!r}", file=file, key=f"{where}.boundary")
    for k in ("logx", "logy"):
        if k in d and not isinstance(d[k], bool):
            raise SpecError(f"{k} must be true or false", file=file, key=f"{where}.{k}")
    for k in ("vmin", "vmax"):
        if k in d and not _number(d[k]):
            raise SpecError(f"{k} must be a number, got {d[k]!r}", file=file, key=f"{where}.{k}")
    if "bins" in d and not ((isinstance(d["bins"], int) and not isinstance(d["bins"], bool)
                             and d["bins"] > 0) or isinstance(d["bins"], str)):
        raise SpecError(f"bins must be a whole number > 0 or a rule such as \"auto\", got "
                        f"{d['bins']!r}", file=file, key=f"{where}.bins")
    if "cmap" in d and not isinstance(d["cmap"], str):
        raise SpecError("cmap must be the name of a matplotlib colour map", file=file,
                        key=f"{where}.cmap", fix='e.g. cmap = "viridis"')
    for k in ("title", "caption"):
        if k in d and not isinstance(d[k], str):
            raise SpecError(f"{k} must be text", file=file, key=f"{where}.{k}")
    if "units" in d and not isinstance(d["units"], dict):
        raise SpecError("units must be a table of column = unit", file=file,
                        key=f"{where}.units", fix='units = { delta = "n/N" }')


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def figure_name(i: int, d: dict, where: str, file, taken: set) -> str:
    """The figure's name (given, or made from its kind and column), unique among `taken`."""
    name = str(d.get("name") or default_name(i, d))
    # a given name becomes a file name in the report folder: the path-name rule applies
    bad = pathnames.problem(name) if d.get("name") else None
    if bad or not all(c.isalnum() or c in "-_." for c in name) or name in taken:
        raise SpecError(f"figure name {name!r} must be unique and use letters, digits, - _ ."
                        + (f" ({bad})" if bad else ""), file=file, key=f"{where}.name")
    return name


def default_name(i: int, d: dict) -> str:
    what = d.get("value") or d.get("y") or d.get("metric") or d.get("column") or ""
    what = "".join(c if c.isalnum() else "_" for c in str(what)).strip("_")
    return f"{i + 1:02d}-{d['kind']}" + (f"-{what}" if what else "")


def choices(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, [str(o) for o in options], n=1) if word else []
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}valid: {', '.join(map(str, options))}"


def unknown_columns(decls: Sequence[dict], known: Iterable[str],
                    file: str | None = None) -> list[str]:
    """Warnings for column-valued keys that look like a typo of a known column (`known`: the
    parameters plus any metric stored so far). Before a run the metrics a task returns are not
    known, so a name unlike every known one is taken for a metric and said nothing of; the
    report checks every name against the results. A `value` with an operator in it is an
    expression, checked when the report is built."""
    names = list(dict.fromkeys([str(k) for k in known] + [N.DURATION, N.ATTEMPTS]))
    out = []
    for i, d in enumerate(decls or ()):
        for k in sorted(COLUMN_KEYS & set(d)):
            v = d[k]
            if not isinstance(v, str) or v in names:
                continue
            if d.get("kind") == "learning_curves" and k == "x" and v in STEP_NAMES:
                continue
            if k == "value" and any(op in v for op in "<>=!+-*/%&|~ "):
                continue
            close = difflib.get_close_matches(v, names, n=1, cutoff=0.75)
            if close:
                where = f"{file}: " if file else ""
                out.append(f"{where}figures[{i}].{k}: no parameter or metric {v!r} so far; did "
                           f"you mean {close[0]!r}? (fine if your task returns {v!r} as a "
                           "metric: the report checks it against the results)")
    return out
