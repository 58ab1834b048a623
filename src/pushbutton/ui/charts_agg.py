"""The live figures from aggregates computed in DuckDB over the results table, so that a
figures request costs a few GROUP BY scans of a columnar table, not 10^6 rows in pandas.

Per figure only small frames come out of DuckDB: a line plot's groups (x, hue) with each
group's row count and the metric's count, mean, sample standard deviation and sum (its
successes for a 0/1 metric: the sufficient statistics of the Wilson and Student t intervals),
a heatmap's cells with the value's mean and count and the tasks and failures per cell, a
histogram's counts per bin (the bins numpy's `histogram_bin_edges` picks, from the column's
count, range and quartiles). Those go to the analysis layer (`stats.aggregate_stats`,
`stats.boundary_of_means`) and to the very drawing functions of charts.py, so the numbers are
those of the report (tests/ui/test_charts_agg.py compares with the full-frame path).

A figure whose value is an expression (`value = "err < 0.1"`: the safe expression language
is evaluated in pandas) or whose histogram bins are not "auto" or a number is drawn by the
full-frame path on only the columns it names. Learning curves read the series table, as before.
"""
from __future__ import annotations

import contextlib
import re

import numpy as np
import pandas as pd

from pushbutton.analysis import figure_specs as FS
from pushbutton.analysis import grouped as G2
from pushbutton.analysis import stats as A
from pushbutton.analysis.figure_base import _numeric_col, _units, label
from pushbutton.analysis.figures import _default_err
from pushbutton.analysis.phase import _Axis
from pushbutton.core import names as N
from pushbutton.ui import charts as C

_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
            "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "REAL")
DONE, FAILED = "_pb_d", "_pb_f"  # the state's tests, computed once per row (Table.src)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Table:
    """The results table as a DuckDB relation: `con` (one query at a time, under `lock` when
    given), `name` (a table or view with the columns of `exp.results()` plus `row`, its space
    order), and the parameter and metric names of the experiment."""

    def __init__(self, con, name: str, params: list, metrics: list, row: str, lock=None):
        self.con, self.name, self.row, self.lock = con, name, row, lock
        # under the lock too: the connection is shared with the results page's queries, and
        # DuckDB refuses a second call on a busy connection instead of waiting
        with lock if lock is not None else contextlib.nullcontext():
            self.types = {r[0]: r[1] for r in con.execute(f"DESCRIBE {name}").fetchall()}
        self.columns = [c for c in self.types if c != row]
        self.params = [c for c in params if c in self.types]
        known = set(self.params) | set(metrics)
        self.params += [c for c in self.columns if c not in known and not N.reserved(c)]
        self.metrics = [c for c in metrics if c in self.types and c not in self.params]
        # the relation the queries read: the table with the state's tests computed once a row
        self.src = (f"(SELECT *, {N.STATUS} = 'done' AS {DONE}, {N.STATUS} = 'failed' AS "
                    f"{FAILED} FROM {name})")
        self._schema = None
        self._profile = None
        self._nunique = None

    # -- SQL pieces ----------------------------------------------------------------------
    def numeric(self, c: str) -> bool:
        t = self.types.get(c, "")
        return t in _NUMERIC or t.startswith("DECIMAL")

    def value(self, c: str) -> str:
        """c as a float with NaN as NULL (pandas leaves NaN out; DuckDB would average it)."""
        t, q = self.types.get(c, ""), _q(c)
        if t in ("FLOAT", "DOUBLE", "REAL"):
            return f"CASE WHEN isnan({q}) THEN NULL ELSE CAST({q} AS DOUBLE) END"
        if self.numeric(c) or t == "BOOLEAN":
            return f"CAST({q} AS DOUBLE)"
        v = f"TRY_CAST({q} AS DOUBLE)"  # text: what pandas' to_numeric(errors="coerce") reads
        return f"CASE WHEN isnan({v}) THEN NULL ELSE {v} END"

    def df(self, sql: str, params=None) -> pd.DataFrame:
        if self.lock is None:
            out = self.con.execute(sql, params).df()
        else:
            with self.lock:
                out = self.con.execute(sql, params).df()
        for c in out.columns:  # as `exp.results()` reads parameters (store.views._infer)
            if c in self.params and out[c].dtype == object:
                from pushbutton.store.views import _infer
                out[c] = _infer(out[c])
        return out

    def profile(self) -> dict:
        """Two scans for what every figure asks of whole columns: row counts and the metrics'
        0/1 counts (done rows and all rows); the run-time statistics of the timing line and
        the throughput chart's span."""
        if self._profile is not None:
            return self._profile
        sel = ["count(*) AS n", f"count(*) FILTER ({DONE}) AS n_done"]
        cols = self._binary_columns(self.metrics + [N.DURATION], sel)
        r = self.df(f"SELECT {', '.join(sel)} FROM {self.src}").iloc[0].to_dict()
        timing = self.numeric(N.FINISHED_AT) and self.numeric(N.DURATION)
        if timing:  # a scan of its own: DuckDB runs one with many aggregates slower
            dur, end = self.value(N.DURATION), self.value(N.FINISHED_AT)
            fin = f"{N.STATUS} IN ('done', 'failed') AND {end} IS NOT NULL AND isfinite({end})"
            sel = [f"count(*) FILTER ({FAILED}) AS n_failed",
                   f"count(*) FILTER ({fin}) AS n_fin",
                   f"min({end} - coalesce(CASE WHEN isfinite({dur}) THEN {dur} END, 0)) "
                   f"FILTER ({fin}) AS t_lo", f"max({end}) FILTER ({fin}) AS t_hi",
                   f"sum({dur}) AS dur_sum", f"count({dur}) AS dur_n",
                   f"avg({dur}) FILTER ({DONE}) AS dur_mean",
                   f"quantile_cont({dur}, [0.25, 0.5, 0.75, 0.9]) FILTER ({DONE}) AS dur_q",
                   f"max({dur}) FILTER ({DONE}) AS dur_max",
                   f"min({dur}) FILTER ({DONE}) AS dur_min",
                   f"count({dur}) FILTER ({DONE}) AS dur_n_done",
                   f"max({end}) AS end_max", f"min({end} - coalesce({dur}, 0)) AS start_min"]
            if N.ATTEMPTS in self.types:
                sel.append(f"count(*) FILTER (TRY_CAST({_q(N.ATTEMPTS)} AS DOUBLE) > 1) "
                           "AS retried")
            r.update(self.df(f"SELECT {', '.join(sel)} FROM {self.src}").iloc[0].to_dict())
        q = r.pop("dur_q", None)
        if timing:
            q = list(q) if isinstance(q, (list, tuple, np.ndarray)) else [None] * 4
            r["dur_q1"], r["dur_median"], r["dur_q3"], r["dur_p90"] = q
        r["binary"] = self._binary_read(cols, r)
        r["timing"] = timing
        self._profile = r
        return r

    def _binary_columns(self, cols: list, sel: list) -> list:
        """Adds to `sel` the counts of values, zeros and ones of each numeric or boolean
        column of `cols` (done rows, all rows); returns those columns."""
        cols = [c for c in dict.fromkeys(cols)
                if c in self.types and (self.numeric(c) or self.types[c] == "BOOLEAN")]
        for i, c in enumerate(cols):
            v = self.value(c)
            for w, cond in (("d", f" AND {DONE}"), ("a", "")):
                sel += [f"count(*) FILTER ({v} IS NOT NULL{cond}) AS b{i}{w}_n",
                        f"count(*) FILTER ({v} = 0{cond}) AS b{i}{w}_z",
                        f"count(*) FILTER ({v} = 1{cond}) AS b{i}{w}_1"]
        return cols

    @staticmethod
    def _binary_read(cols: list, r: dict) -> dict:
        out = {}
        for i, c in enumerate(cols):
            out[c] = {}
            for w in "da":
                n, z, o = (int(r[f"b{i}{w}_{k}"]) for k in "nz1")
                out[c][w] = (n, n - z - o, z, o)
        return out

    def nunique(self) -> dict:
        """Each parameter's distinct values: {"all": over all rows, "done": over the done
        rows, NULL counted as one value}."""
        if self._nunique is None:
            sel = []
            for i, p in enumerate(self.params):
                sel += [f"count(DISTINCT {_q(p)}) AS u{i}",
                        f"count(DISTINCT {_q(p)}) FILTER ({DONE}) + coalesce(max(({_q(p)} IS "
                        f"NULL)::INT) FILTER ({DONE}), 0) AS ud{i}"]
            r = self.df(f"SELECT {', '.join(sel)} FROM {self.src}").iloc[0] if sel else {}
            self._nunique = {"all": {p: int(r[f"u{i}"]) for i, p in enumerate(self.params)},
                             "done": {p: int(r[f"ud{i}"]) for i, p in enumerate(self.params)}}
        return self._nunique

    def binary(self, c: str, done: bool = True, as_float: bool = False) -> bool:
        """stats.is_binary of the column over the done rows (or all rows) (as_float: of its
        values as floats, as a heatmap's value: booleans then need both 0 and 1)."""
        b = self.profile()["binary"].get(c)
        if b is None:  # a column no figure asks of often (a parameter, say): its own scan
            sel: list = []
            cols = self._binary_columns([c], sel)
            if not cols:
                return False
            b = self._binary_read(cols, self.df(f"SELECT {', '.join(sel)} FROM "
                                                f"{self.src}").iloc[0].to_dict())[c]
            self.profile()["binary"][c] = b
        n, other, zeros, ones = b["d" if done else "a"]
        if self.types[c] == "BOOLEAN" and not as_float:
            return n > 0
        return n > 0 and other == 0 and zeros > 0 and ones > 0

    def _within(self, params: list) -> list:
        """SELECT items: per parameter, 2 if it has several values among a group's done rows
        (what averaged_over asks), else 0."""
        # more than one value (NULL being one) <=> min != max, or NULL beside a value
        return [f"(min({_q(p)}) FILTER ({DONE}) <> max({_q(p)}) FILTER ({DONE}) OR (bool_or("
                f"{_q(p)} IS NULL) FILTER ({DONE}) AND count({_q(p)}) FILTER ({DONE}) > 0))"
                f"::INT * 2 AS w{i}" for i, p in enumerate(params)]

    def _averaged(self, shown: list, groups: pd.DataFrame) -> list[tuple[str, int]]:
        """figure_base.averaged_over of the done rows, from the groups' `w` columns."""
        if not self.profile()["n_done"]:
            return []
        varied = [p for i, p in enumerate(self._others(shown))
                  if len(groups) and groups[f"w{i}"].max() > 1]
        return [(p, self.nunique()["done"][p]) for p in varied]

    def _others(self, shown: list) -> list:
        return [p for p in self.params if p not in shown and p not in A.REPLICATE]

    def schema(self) -> pd.DataFrame:
        """A frame with the table's columns (one row of each parameter's values, typed as the
        table reads them), for checking declarations: only names and types are looked at."""
        if self._schema is None:
            cols = ", ".join(_q(c) for c in self.columns)
            s = self.df(f"SELECT {cols} FROM {self.src} LIMIT 0")
            s.attrs["params"], s.attrs["metrics"] = list(self.params), list(self.metrics)
            self._schema = s
        return self._schema

    def frame(self, cols: list) -> pd.DataFrame:
        """The table with only these columns (and the state), in space order."""
        cols = list(dict.fromkeys([c for c in cols if c in self.types] + [N.STATUS]))
        out = self.df(f"SELECT {', '.join(_q(c) for c in cols)} FROM {self.src} "
                      f"ORDER BY {_q(self.row)}")
        out.attrs["params"] = [c for c in self.params if c in out.columns]
        out.attrs["metrics"] = [c for c in self.metrics if c in out.columns]
        return out

# --------------------------------------------------------------------------- figures
def line(t: Table, x: str, y: str, hue: str | None = None, err: str | None = None,
         ci: float = 0.95, units: dict | None = None, title: str | None = None,
         logx: bool = False, logy: bool = False) -> dict:
    """charts.line from one GROUP BY (x, hue) over every row: the done rows' statistics of
    y, the points in the space's order, the other parameters' values within each point."""
    keys = [x] + ([hue] if hue else [])
    binary = t.binary(y)
    err = ("ci" if binary else "sem") if err is None else _default_err(None, y, err)
    units = _units(t.schema(), units)
    v, k = t.value(y), ", ".join(_q(c) for c in keys)
    others = t._others(keys)
    groups = t.df(f"SELECT {k}, count(*) FILTER ({DONE}) AS {N.N}, count(v) FILTER ({DONE}) "
                  f"AS m_count, avg(v) FILTER ({DONE}) AS m_mean, stddev_samp(v) FILTER "
                  f"({DONE}) AS m_std, sum(v) FILTER ({DONE}) AS m_sum, min({_q(t.row)}) AS "
                  f"pb_first{''.join(', ' + w for w in t._within(others))} FROM (SELECT *, {v} "
                  f"AS v FROM {t.src}) GROUP BY {k} ORDER BY pb_first")
    stats = groups[groups[N.N] > 0].rename(
        columns={f"m_{s}": f"{y}_{s}" for s in ("count", "mean", "std", "sum")})
    agg = G2.aggregate_stats(stats, keys, [y], ci, binary={y} if binary else ())
    interval = agg.attrs["intervals"][y]
    agg = agg.dropna(subset=[f"{y}_mean"])
    points = groups[keys]

    def undrawn(notes):
        from pushbutton.analysis.figures import _say_undrawn
        _say_undrawn(notes, points.assign(**{N.STATUS: "?"}), agg, x, hue)
    return C.line_figure(agg, interval, x, y, hue, err, ci, units, title, logx, logy,
                         undrawn=undrawn, over=t._averaged(keys, groups))


def heatmap(t: Table, x: str, y: str, value: str, boundary=None, units: dict | None = None,
            title: str | None = None, cmap: str = "viridis", vmin: float | None = None,
            vmax: float | None = None, logx: bool | None = None,
            logy: bool | None = None) -> dict:
    """charts.heatmap from one GROUP BY (y, x) over every row: the cells' tasks and failures,
    the done rows' mean and count of the value, the other parameters' values per cell."""
    units = _units(t.schema(), units)
    title = title or f"{label(value)} over {label(x)} × {label(y)}"
    qx, qy, v = _q(x), _q(y), t.value(value)
    others = t._others([x, y])
    cells = t.df(f"SELECT {qy}, {qx}, count(*) AS total, count(*) FILTER ({FAILED}) "
                 f"AS failed, avg(v) FILTER ({DONE}) AS mean, count(v) FILTER "
                 f"({DONE}) AS count, min({_q(t.row)}) AS pb_first"
                 f"{''.join(', ' + w for w in t._within(others))} FROM (SELECT *, {v} AS v "
                 f"FROM {t.src}) GROUP BY {qy}, {qx} ORDER BY pb_first")

    def levels(c):  # the values in the order first seen (numbers get sorted by _Axis)
        col = cells.dropna(subset=[c]).drop_duplicates(subset=[c])[c]
        return col.reset_index(drop=True)
    xa, ya = _Axis(levels(x), logx), _Axis(levels(y), logy)

    def grid(col, fill):
        if not len(cells):
            return np.full((len(ya.levels), len(xa.levels)), fill, dtype=float)
        g = cells.set_index([y, x])[col].astype(float).unstack(x) \
            .reindex(index=ya.levels, columns=xa.levels)
        return (g if np.isnan(fill) else g.fillna(fill)).to_numpy(float)
    z, nval = grid("mean", np.nan), grid("count", 0.0)
    counts = {"total": grid("total", 0.0), "failed": grid("failed", 0.0)}

    def bound(level):
        return G2.boundary_of_means(cells[[x, y, "mean"]], x, y, "mean", level=level)
    return C.heatmap_figure(xa, ya, z, nval, counts, t.binary(value, as_float=True), x, y,
                            value, boundary, units, title, cmap, vmin, vmax, bound=bound,
                            over=t._averaged([x, y], cells))


def histogram(t: Table, column: str, hue: str | None = None, bins="auto",
              units: dict | None = None, title: str | None = None, logy: bool = False) -> dict:
    """charts.histogram from two scans: the done values' count, range and quartiles (numpy's
    bins), then the counts per (hue, bin)."""
    units = _units(t.schema(), units)
    title = title or f"distribution of {label(column)}"
    v = t.value(column)
    prof = t.profile()
    if column == N.DURATION and prof["timing"]:  # (the timing line's scan has them)
        s = {"n": prof["dur_n_done"], "lo": prof["dur_min"], "hi": prof["dur_max"],
             "q1": prof["dur_q1"], "q3": prof["dur_q3"]}
    else:
        s = t.df(f"SELECT count(v) AS n, min(v) AS lo, max(v) AS hi, quantile_cont(v, 0.25) "
                 f"AS q1, quantile_cont(v, 0.75) AS q3 FROM (SELECT {v} AS v FROM {t.src} "
                 f"WHERE {DONE})").iloc[0]
    n = int(s["n"])
    if n == 0:
        return {"title": title, "notes": [], "plotly": C._empty(title)}
    edges = bin_edges(n, float(s["lo"]), float(s["hi"]), float(s["q1"]), float(s["q3"]), bins)
    nb = len(edges) - 1
    first, last = float(edges[0]), float(edges[-1])
    hk = f"{_q(hue)}, " if hue else ""
    # numpy's binning of uniform bins: the index from the position, corrected by the edges
    # themselves (a value on an edge goes right; the last bin holds its upper edge); a hue
    # value whose done rows have no value is a group with no counts
    sql = (f"SELECT {hk}i0 - (v < ($e)[i0 + 1])::INT + (v >= ($e)[i0 + 2] AND i0 < {nb - 1})"
           f"::INT AS bin, count(*) AS c FROM (SELECT {hk}v, least(greatest(CAST(floor((v - "
           f"{first!r}) * {nb / (last - first)!r}) AS BIGINT), 0), {nb - 1}) AS i0 FROM "
           f"(SELECT {hk}{v} AS v FROM {t.src} WHERE {DONE})) GROUP BY ALL")
    binned = t.df(sql, {"e": [float(e) for e in edges]})
    hues = binned[[hue]].drop_duplicates() if hue else None
    groups = _hue_groups(hues, hue)
    counts = []
    for key, _ in groups:
        part = binned if hue is None else binned[_match(binned[hue], key)]
        part = part.dropna(subset=["bin"])
        c = np.zeros(nb, dtype=np.int64)
        np.add.at(c, part["bin"].to_numpy(np.int64), part["c"].to_numpy(np.int64))
        counts.append(c)
    return C.histogram_figure(edges, groups, counts, hues if hue else t.schema(), column, hue,
                              units, title, logy)


def _hue_groups(hues, hue) -> list:
    """(key, rows) as figures._hue_groups gives them (sorted, NaN last), from the distinct
    values."""
    if hue is None:
        return [(None, None)]
    return list(hues.groupby(hue, sort=True, dropna=False))


def _match(col: pd.Series, key) -> pd.Series:
    return col.isna() if pd.isna(key) else col == key


def bin_edges(n: int, lo: float, hi: float, q1: float, q3: float, bins) -> np.ndarray:
    """np.histogram_bin_edges(a, bins) from a's size, range and quartiles, for bins "auto"
    (the smaller of the Freedman-Diaconis and Sturges widths) or a number of bins."""
    first, last = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)
    if isinstance(bins, str):
        width = _auto_width(n, hi - lo, q3 - q1, _relaxed_fd())
        nb = int(np.ceil((last - first) / width)) if width else 1
    else:
        nb = int(bins)
    return np.linspace(first, last, nb + 1, endpoint=True)


def _auto_width(n: int, ptp: float, iqr: float, relaxed: bool) -> float:
    sturges = ptp / (np.log2(n) + 1.0)
    fd = 2.0 * iqr * n ** (-1.0 / 3.0)
    if relaxed:  # numpy >= 2.1: FD no narrower than half the square-root rule's width
        return min(max(fd, ptp / np.sqrt(n) / 2), sturges)
    return min(fd, sturges) if fd else sturges


_RELAXED: list = []


def _relaxed_fd() -> bool:
    """Which "auto" rule this numpy has (it changed in numpy 2.1), told by its own answer on
    data where the two differ."""
    if not _RELAXED:
        a = np.arange(10.0)
        a[-1] = 1000.0
        q1, q3 = np.percentile(a, [25, 75])
        got = len(np.histogram_bin_edges(a, bins="auto")) - 1
        widths = {r: _auto_width(len(a), float(np.ptp(a)), q3 - q1, r) for r in (True, False)}
        _RELAXED.append(got == int(np.ceil(np.ptp(a) / widths[True])))
    return _RELAXED[0]


# --------------------------------------------------------------------------- the spec's figures
def _columns_of(decl: dict, t: Table) -> list:
    """The columns a declaration names (an expression's too: every column named in it)."""
    cols = [decl[k] for k in ("x", "y", "hue", "column") if decl.get(k)]
    if decl.get("value"):
        cols += [c for c in t.columns if re.search(r"(?<![\w.])" + re.escape(c) + r"(?![\w])",
                                                   decl["value"])]
    return cols


def _aggregable(decl: dict, t: Table) -> bool:
    kind = decl["kind"]
    if kind == "heatmap":
        return decl["value"] in t.types
    if kind == "histogram":
        b = decl.get("bins", "auto")
        return b == "auto" or (isinstance(b, int) and not isinstance(b, bool) and b > 0)
    return kind == "line"


_KINDS = {"line": line, "heatmap": heatmap, "histogram": histogram}


def render(decl: dict, t: Table, series: pd.DataFrame | None, units: dict | None) -> dict:
    """One validated declaration -> figure dict, as charts.render draws it from the full
    table."""
    kind = decl["kind"]
    if kind == "learning_curves":
        return C.render(decl, t.schema(), series, units)
    missing = [decl[k] for k in ("x", "y", "hue", "column") if k in decl
               and decl[k] not in t.types]
    if "value" in decl and decl["value"] not in t.types \
            and not FS._is_expression(decl["value"], t.schema()):
        missing.append(decl["value"])
    if missing or not _aggregable(decl, t):  # (a missing column: charts.render says so)
        # (the parameters too: the figure says which of them it averaged over)
        return C.render(decl, t.frame(_columns_of(decl, t) + t.params), series, units)
    u = dict(units or {})
    u.update(decl.get("units") or {})
    kw = {k: v for k, v in decl.items() if k not in FS._COMMON}
    kw["units"], kw["title"] = u, decl.get("title")
    base = {"name": decl["name"], "kind": kind, "caption": decl.get("caption", "")}
    return {**base, **_KINDS[kind](t, **kw)}


def auto_declarations(t: Table, series: pd.DataFrame | None = None,
                      max_figures: int = 6) -> list[dict]:
    """figure_specs.auto_declarations of the table, from its profile."""
    prof = t.profile()
    if int(prof["n"]) == 0:
        return []
    schema = t.schema()
    params = [p for p in t.params if p not in A.REPLICATE]
    metrics = [m for m in t.metrics if t.numeric(m) or t.types[m] == "BOOLEAN"]
    nuniq = t.nunique()["all"]
    varied = [p for p in params if nuniq[p] > 1 and _numeric_col(schema[p])]
    others = [p for p in params if p not in varied[:1] and 1 < nuniq[p] <= 8]
    decls: list[dict] = []
    for m in metrics[:3]:
        if len(varied) >= 2:
            decls.append({"kind": "heatmap", "x": varied[0], "y": varied[1], "value": m,
                          **({"boundary": 0.5} if t.binary(m, done=False) else {})})
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
    dur = prof["binary"].get(N.DURATION)
    if dur is not None and dur["a"][0] > 0:
        decls.append({"kind": "histogram", "column": N.DURATION,
                      "title": "task run time (finished tasks)"})
    return decls[:max_figures]


def figures(t: Table, series: pd.DataFrame | None, decls, units: dict | None = None,
            file: str | None = None) -> dict:
    """charts.figures over the DuckDB table: `{"figures": [...], "problems": [...]}`."""
    declared = decls is not None
    if decls is None:
        decls = auto_declarations(t, series)
    finished = int(t.profile()["n_done"]) > 0
    valid = FS.validate(decls, t.schema(), series, file=file, check_columns=finished)
    return C.render_all(valid, lambda d: render(d, t, series, units), declared)
